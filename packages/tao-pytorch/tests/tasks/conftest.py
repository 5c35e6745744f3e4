"""Fixtures of the task tests: a few images with COCO json, one tiny checkpoint per network."""

from pathlib import Path

import pytest
from detr_task_helpers import make_checkpoint, make_data, write_spec


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> dict:
    return make_data(tmp_path_factory.mktemp("task_data"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, task_data):
    """checkpoints(network) -> Path of a tiny plain checkpoint (built once per session)."""
    root = tmp_path_factory.mktemp("checkpoints")
    made = {}

    def get(network: str) -> Path:
        if network not in made:
            ckpt = root / f"{network}.pth"
            spec = write_spec(root / f"{network}.yaml", task_data, root / "unused", str(ckpt))
            made[network] = make_checkpoint(network, spec, ckpt)
        return made[network]

    return get


@pytest.fixture
def spec(tmp_path, task_data, checkpoints):
    """spec(network, **sections) -> (spec file, results_dir) using the network's checkpoint."""

    def make(network: str, checkpoint=None, **sections):
        ckpt = str(checkpoint if checkpoint is not None else checkpoints(network))
        results = tmp_path / "results"
        return write_spec(tmp_path / "spec.yaml", task_data, results, ckpt, **sections), results

    return make
