"""Fixtures of the training tests: tiny specs, one shared 1-epoch DINO run, spec/ctx builders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from train_helpers import make_sources, run_cli, write_spec


def pytest_configure(config):
    config.addinivalue_line("markers", "ddp: multi-process (Lightning DDP over gloo) training; runs on 2 CPU cores")


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict:
    return make_sources(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(scope="session")
def dino_run(tmp_path_factory, sources) -> Path:
    """results_dir of a finished 1-epoch DINO run through the `dino train` command path."""
    root = tmp_path_factory.mktemp("dino_run")
    spec = write_spec(root / "spec.yaml", "dino", sources, root / "results")
    assert run_cli("dino", spec) == 0
    return root / "results"


@pytest.fixture
def dino_run_copy(dino_run, tmp_path) -> Path:
    """A private copy of the shared run's results folder (symlinks kept), for tests that write."""
    dest = tmp_path / "results"
    shutil.copytree(dino_run, dest, symlinks=True)
    return dest
