"""Each bad input is a TaoUserError raised before any building starts (the no_build guard)."""

import platform

import pytest

from tao_core.crypto import WrongKeyError
from tao_core.errors import TaoUserError
from tao_core.etlt import write_etlt
from tao_deploy import Calibration, build_engine
from tao_deploy.backends import choose_backend, onnxruntime_backend
from tao_deploy.testing import tiny_cnn


def test_missing_onnx(tmp_path, no_build):
    with pytest.raises(TaoUserError, match="model file not found"):
        build_engine(tmp_path / "nope.onnx", tmp_path / "m.engine")


def test_not_onnx(tmp_path, no_build):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(TaoUserError, match="not a valid ONNX model"):
        build_engine(tmp_path / "junk.onnx", tmp_path / "m.engine")


def test_encrypted_without_key_and_wrong_key(tmp_path, no_build):
    path = tmp_path / "model.etlt"
    write_etlt(path, tiny_cnn().SerializeToString(), "", "right")
    with pytest.raises(TaoUserError, match="encrypted; pass its key"):
        build_engine(path, tmp_path / "m.engine")
    with pytest.raises(WrongKeyError, match="wrong key"):
        build_engine(path, tmp_path / "m.engine", key="wrong")
    assert issubclass(WrongKeyError, TaoUserError)


def test_unsupported_precision(cnn_path, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="precision 'bf16'"):
        build_engine(cnn_path, tmp_path / "m.engine", "bf16")


def test_int8_without_calibration(cnn_path, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="INT8 needs calibration"):
        build_engine(cnn_path, tmp_path / "m.engine", "int8")
    with pytest.raises(TaoUserError, match="cal.bin does not exist"):
        build_engine(cnn_path, tmp_path / "m.engine", "int8", calibration=Calibration(cache_file=tmp_path / "cal.bin"))


def test_precision_a_backend_cannot_do(cnn_path, tmp_path, no_build, monkeypatch):
    def no_int8(precision, options):
        if precision == "int8":
            raise TaoUserError("this backend cannot run INT8")

    monkeypatch.setattr(onnxruntime_backend, "check", no_int8)
    with pytest.raises(TaoUserError, match="cannot run INT8"):
        build_engine(cnn_path, tmp_path / "m.engine", "int8", backend="onnxruntime", calibration=Calibration(data=[]))


def test_options_onnxruntime_cannot_honour(cnn_path, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="DLA"):
        build_engine(cnn_path, tmp_path / "m.engine", backend="onnxruntime", dla_core=0)
    with pytest.raises(TaoUserError, match="strict type"):
        build_engine(cnn_path, tmp_path / "m.engine", backend="onnxruntime", strict_types=True)


def test_bad_profile_and_batches(cnn_path, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="0 < min <= opt <= max"):
        build_engine(cnn_path, tmp_path / "m.engine", min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(TaoUserError, match="workspace"):
        build_engine(cnn_path, tmp_path / "m.engine", workspace_mib=0)


def test_unknown_or_unusable_backend(cnn_path, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="not one of"):
        build_engine(cnn_path, tmp_path / "m.engine", backend="openvino")
    if onnxruntime_backend is not choose_backend("auto"):
        pytest.skip("TensorRT is usable here")
    with pytest.raises(TaoUserError, match="backend 'tensorrt' cannot be used here"):
        build_engine(cnn_path, tmp_path / "m.engine", backend="tensorrt")


def test_auto_says_which_backend(caplog):
    choose_backend("auto")
    assert any("engine backend:" in r.getMessage() for r in caplog.records)


def test_unwritable_engine_path(cnn_path, tmp_path, no_build):
    (tmp_path / "dir.engine").mkdir()
    with pytest.raises(TaoUserError, match="is a directory"):
        build_engine(cnn_path, tmp_path / "dir.engine")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-only check")
def test_tensorrt_rejects_dla_on_x86(monkeypatch):
    from tao_deploy.backends import BuildOptions, tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "_major", lambda: 10)
    with pytest.raises(TaoUserError, match="DLA exists only on Jetson"):
        tensorrt_backend.check("fp16", BuildOptions(dla_core=0))


def test_tensorrt_rejects_strict_types_on_11_accepts_on_10(monkeypatch):
    from tao_deploy.backends import BuildOptions, tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "version", lambda: "11.4.0")
    monkeypatch.setattr(tensorrt_backend, "_major", lambda: 11)
    with pytest.raises(TaoUserError, match="removed in TensorRT 11"):
        tensorrt_backend.check("fp16", BuildOptions(strict_types=True))
    monkeypatch.setattr(tensorrt_backend, "_major", lambda: 10)
    tensorrt_backend.check("fp16", BuildOptions(strict_types=True))
