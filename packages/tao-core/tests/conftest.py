"""Shared fixtures for tao-core tests."""

from pathlib import Path

import pytest

from tao_core.testing import find_shared_data


@pytest.fixture(scope="session")
def shared_data() -> Path | None:
    """Path to shared/data, or None when absent (tests then fall back to generated data)."""
    return find_shared_data(Path(__file__).resolve().parents[3])
