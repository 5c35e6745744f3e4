"""The TensorRT backend on a real GPU; skipped where tensorrt or an NVIDIA GPU is absent."""

import numpy as np
import onnxruntime as ort
import pytest

from tao_deploy import Calibration, build_engine, load_engine
from tao_deploy.backends import tensorrt_backend
from tao_deploy.testing import random_batches

REASON = tensorrt_backend.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"TensorRT / NVIDIA GPU not available ({REASON})")


def _ref(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_trt_engine_matches_onnxruntime(cnn_path, tmp_path, sample, precision, atol):
    timing = tmp_path / "timing.cache"
    info = build_engine(
        cnn_path, tmp_path / "m.engine", precision, backend="tensorrt", max_batch=4, timing_cache=timing
    )
    assert info.backend == "tensorrt" and timing.is_file()
    out = load_engine(info.path).run({"input": sample})
    np.testing.assert_allclose(out["logits"], _ref(cnn_path, sample), atol=atol)


def test_trt_int8_engine(cnn_path, tmp_path, sample):
    cal = Calibration(data=random_batches((4, 3, 16, 16), 4), cache_file=tmp_path / "cal.bin")
    info = build_engine(cnn_path, tmp_path / "m.engine", "int8", backend="tensorrt", calibration=cal, max_batch=2)
    out = load_engine(info.path).run({"input": sample})["logits"]
    ref = _ref(cnn_path, sample)
    assert np.abs(out - ref).max() / np.abs(ref).max() < 0.05


def test_trt_plan_from_another_version_is_refused(cnn_path, tmp_path):
    from tao_deploy.engine.engine_file import read_engine, write_engine

    info = build_engine(cnn_path, tmp_path / "m.engine", backend="tensorrt")
    meta, payload = read_engine(info.path)
    write_engine(tmp_path / "old.engine", dict(meta, backend_version="9.0.0"), payload)
    with pytest.raises(Exception, match="TensorRT 9.0.0"):
        load_engine(tmp_path / "old.engine")
