"""Engine.run: input checks shared by every backend, profiles, outputs, etlt input."""

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.etlt import write_etlt
from tao_deploy import ShapeRange, build_engine, load_engine
from tao_deploy.engine.onnx_io import input_specs
from tao_deploy.engine.profile import batch_profile, parse_shape, validate_profile
from tao_deploy.testing import tiny_cnn


def test_run_checks_names_dtypes_and_profile(cnn_path, tmp_path, sample):
    engine = load_engine(build_engine(cnn_path, tmp_path / "m.engine", max_batch=2).path)
    with pytest.raises(TaoUserError, match="missing \\['input'\\]"):
        engine.run({"image": sample})
    with pytest.raises(TaoUserError, match="must be float32"):
        engine.run({"input": sample.astype(np.int32)})
    out64 = engine.run({"input": sample.astype(np.float64)})  # same kind: converted
    assert out64["logits"].dtype == np.float32
    with pytest.raises(TaoUserError, match="outside the engine's profile 1x3x16x16 .. 2x3x16x16"):
        engine.run({"input": np.zeros((3, 3, 16, 16), np.float32)})
    with engine:
        pass
    with pytest.raises(TaoUserError, match="closed"):
        engine.run({"input": sample})


def test_explicit_profile_and_output_selection(cnn_path, tmp_path, sample):
    profile = {"input": ShapeRange((1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))}
    info = build_engine(cnn_path, tmp_path / "m.engine", profile=profile, outputs=["probs"])
    engine = load_engine(info.path)
    out = engine.run({"input": sample})
    assert list(out) == ["probs"] and np.allclose(out["probs"].sum(1), 1, atol=1e-5)
    with pytest.raises(TaoUserError, match="not outputs of the model"):
        build_engine(cnn_path, tmp_path / "x.engine", outputs=["nope"])


def test_profile_validation():
    inputs = input_specs(tiny_cnn())
    with pytest.raises(TaoUserError, match="min <= opt <= max"):
        validate_profile({"input": ShapeRange((4, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))}, inputs)
    with pytest.raises(TaoUserError, match="fixed to 16"):
        validate_profile({"input": ShapeRange((1, 3, 16, 16), (1, 3, 32, 32), (1, 3, 32, 32))}, inputs)
    with pytest.raises(TaoUserError, match="rank"):
        validate_profile({"input": ShapeRange((1, 3, 16), (1, 3, 16), (1, 3, 16))}, inputs)
    with pytest.raises(TaoUserError, match="does not have"):
        validate_profile({"image": ShapeRange((1,), (1,), (1,))}, inputs)
    with pytest.raises(TaoUserError, match="0 < min <= opt <= max"):
        batch_profile(inputs, 2, 1, 4)
    assert parse_shape("8x3x544x960") == (8, 3, 544, 960)
    for bad in ("8,3,544,960", "8x3x", "0x3x4x4", "ax3", ""):
        with pytest.raises(TaoUserError, match="bad shape"):
            parse_shape(bad)


def test_etlt_input_with_key(tmp_path, sample):
    path = tmp_path / "model.etlt"
    write_etlt(path, tiny_cnn().SerializeToString(), "", "secret")
    info = build_engine(path, tmp_path / "m.engine", key="secret", max_batch=2)
    assert load_engine(info.path).run({"input": sample})["logits"].shape == (2, 5)
