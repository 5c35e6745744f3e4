"""Shared fixtures: tiny ONNX models on disk, and a guard proving a step never started building."""

import logging

import numpy as np
import onnx
import pytest

from tao_deploy.testing import random_batches, tiny_cnn, tiny_gridsample


@pytest.fixture(scope="session")
def cnn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "cnn.onnx"
    onnx.save_model(tiny_cnn(), path)
    return path


@pytest.fixture(scope="session")
def grid_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "grid.onnx"
    onnx.save_model(tiny_gridsample(), path)
    return path


@pytest.fixture
def cal_batches():
    return random_batches((4, 3, 16, 16), 4, seed=1)


@pytest.fixture
def sample():
    return np.random.default_rng(7).random((2, 3, 16, 16), dtype=np.float32)


@pytest.fixture
def no_build(monkeypatch):
    """Fails the test if any backend starts building (bad input must be caught before)."""
    from tao_deploy.backends import onnxruntime_backend
    from tao_deploy.engine import precision

    def boom(*a, **k):
        raise AssertionError("building started although the input was invalid")

    monkeypatch.setattr(onnxruntime_backend, "build", boom)
    monkeypatch.setattr(precision, "compute_amax", boom)
    monkeypatch.setattr(precision, "cast_to_fp16", boom)


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)
