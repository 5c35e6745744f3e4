"""Shared fixtures for tao-core tests."""

import os
from pathlib import Path

import pytest


def find_shared_data() -> Path | None:
    """The project's small real datasets: $TAO_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("TAO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared" / "data", repo / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path | None:
    """Path to shared/data, or None when absent (tests then fall back to generated data)."""
    return find_shared_data()
