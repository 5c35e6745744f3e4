"""End-to-end fixtures: tiny DINO / Deformable DETR -> tao-pytorch export -> tao-deploy engines.

Needs tao-pytorch and tao-deploy in one environment (the tests skip otherwise). Data: raccoon
from $TAO_SHARED_DATA, ../shared/data beside the checkout, or examples/data in the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the end-to-end tests need tao-pytorch (torch)")
pytest.importorskip("tao_pytorch", reason="the end-to-end tests need tao-pytorch")
pytest.importorskip("tao_deploy", reason="the end-to-end tests need tao-deploy")

from e2e_helpers import Pipeline, make_subset, write_spec  # noqa: E402

from tao_core.testing import find_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def find_raccoon() -> Path | None:
    return find_dataset("raccoon", REPO)


@pytest.fixture(scope="session")
def raccoon() -> Path:
    root = find_raccoon()
    if root is None:
        pytest.skip("raccoon data not found (set TAO_SHARED_DATA or add examples/data/raccoon)")
    return root


@pytest.fixture(scope="session")
def data(raccoon, tmp_path_factory) -> dict:
    return make_subset(raccoon, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def pipelines(data, tmp_path_factory):
    """pipelines(network) -> Pipeline: checkpoint, spec, exported ONNX, FP32 engine (built once)."""
    made: dict[str, Pipeline] = {}

    def get(network: str) -> Pipeline:
        if network not in made:
            root = tmp_path_factory.mktemp(network)
            made[network] = Pipeline.create(network, root, data)
        return made[network]

    return get


@pytest.fixture
def spec_for():
    return write_spec
