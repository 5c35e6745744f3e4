"""The self-describing engine file: header round trip, integrity, versions, atomic writes."""

import json
import os

import onnx
import pytest
from onnx import helper

import tao_deploy
from tao_core.errors import TaoUserError
from tao_deploy import build_engine, load_engine
from tao_deploy.backends import tensorrt_backend
from tao_deploy.engine import engine_file
from tao_deploy.engine.engine_file import MAGIC, read_engine, read_metadata, write_engine


def test_metadata_round_trip(cnn_path, tmp_path):
    info = build_engine(
        cnn_path,
        tmp_path / "m.engine",
        "fp32",
        class_names=["car", "person"],
        max_batch=8,
        opt_batch=4,
        metadata={"network": "tiny_cnn", "mean": [0.5, 0.5, 0.5]},
    )
    raw = (tmp_path / "m.engine").read_bytes()
    assert raw.startswith(MAGIC)
    meta = read_metadata(info.path)
    assert meta == info.metadata | {"payload_bytes": meta["payload_bytes"], "payload_sha256": meta["payload_sha256"]}
    assert meta["backend"] == "onnxruntime" and meta["precision"] == "fp32"
    assert meta["backend_version"] == __import__("onnxruntime").__version__
    assert meta["tao_deploy_version"] == tao_deploy.__version__
    assert meta["inputs"] == [{"name": "input", "shape": ["batch", 3, 16, 16], "dtype": "float32"}]
    assert meta["outputs"] == ["logits", "probs", "norm"]
    assert meta["class_names"] == ["car", "person"]
    assert meta["profile"]["input"] == {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}
    assert meta["network"] == "tiny_cnn" and meta["mean"] == [0.5, 0.5, 0.5]
    assert meta["created"].endswith("+00:00")
    engine = load_engine(info.path)
    assert engine.metadata["class_names"] == ["car", "person"] and engine.precision == "fp32"


def test_truncated_and_corrupt_files(cnn_path, tmp_path):
    path = build_engine(cnn_path, tmp_path / "m.engine").path
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(TaoUserError, match="truncated"):
        load_engine(path)
    path.write_bytes(raw[:-10] + b"X" * 10)
    with pytest.raises(TaoUserError, match="checksum"):
        load_engine(path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(TaoUserError, match="not a tao-deploy engine"):
        load_engine(path)
    with pytest.raises(TaoUserError, match="not found"):
        load_engine(tmp_path / "missing.engine")


def test_onnxruntime_version_mismatch_names_both_versions(tmp_path):
    # An engine "built by a future onnxruntime" whose model uses an opset this one does not know.
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", 1, [1])], [helper.make_tensor_value_info("y", 1, [1])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 999)])
    meta = {
        "backend": "onnxruntime",
        "backend_version": "99.1.0",
        "precision": "fp32",
        "inputs": [{"name": "x", "shape": [1], "dtype": "float32"}],
        "outputs": ["y"],
    }
    write_engine(tmp_path / "future.engine", meta, model.SerializeToString())
    with pytest.raises(TaoUserError) as err:
        load_engine(tmp_path / "future.engine")
    msg = str(err.value)
    assert "onnxruntime 99.1.0" in msg and f"onnxruntime {__import__('onnxruntime').__version__}" in msg


def test_tensorrt_plan_version_mismatch_message():
    with pytest.raises(TaoUserError) as err:
        tensorrt_backend.check_plan_version("10.3.0.26", "10.8.0.43", "model.engine")
    assert "TensorRT 10.3.0.26" in str(err.value) and "TensorRT 10.8.0.43" in str(err.value)
    tensorrt_backend.check_plan_version("10.3.0", "10.3.0")


@pytest.mark.skipif(tensorrt_backend.unavailable_reason() is None, reason="TensorRT is usable here")
def test_tensorrt_engine_without_tensorrt_is_a_clear_error(tmp_path):
    meta = {"backend": "tensorrt", "backend_version": "10.3.0", "precision": "fp16", "inputs": [], "outputs": []}
    write_engine(tmp_path / "trt.engine", meta, b"\x00plan")
    with pytest.raises(TaoUserError, match="TensorRT 10.3.0 engine, but TensorRT cannot run here"):
        load_engine(tmp_path / "trt.engine")


def test_unknown_format_version(tmp_path, cnn_path):
    path = build_engine(cnn_path, tmp_path / "m.engine").path
    raw = bytearray(path.read_bytes())
    raw[8] = 7
    path.write_bytes(bytes(raw))
    with pytest.raises(TaoUserError, match="format version 7"):
        read_metadata(path)


def test_interrupted_build_leaves_no_partial_file_and_keeps_old_engine(cnn_path, tmp_path, monkeypatch, sample):
    out = tmp_path / "m.engine"
    build_engine(cnn_path, out, "fp32", max_batch=2)
    old = out.read_bytes()

    def half_then_crash(f, payload, chunk=0):
        f.write(bytes(payload)[: len(payload) // 2])
        raise KeyboardInterrupt  # what Ctrl-C mid-write looks like

    monkeypatch.setattr(engine_file, "_write_payload", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        build_engine(cnn_path, out, "fp16", max_batch=2)
    assert out.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.engine"]  # no temporary leftovers
    assert load_engine(out).precision == "fp32"

    fresh = tmp_path / "new" / "n.engine"
    with pytest.raises(KeyboardInterrupt):
        build_engine(cnn_path, fresh, "fp32")
    assert not fresh.exists() and os.listdir(fresh.parent) == []


def test_backend_serialize_failure_leaves_nothing(cnn_path, tmp_path, monkeypatch):
    from tao_deploy.backends import onnxruntime_backend

    def crash(model):
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnxruntime_backend, "serialize", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_engine(cnn_path, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_payload_is_the_prepared_onnx(cnn_path, tmp_path):
    info = build_engine(cnn_path, tmp_path / "m.engine", "fp16")
    meta, payload = read_engine(info.path)
    model = onnx.load_model_from_string(payload)
    assert any(n.op_type == "Cast" for n in model.graph.node)
    assert json.loads(json.dumps(meta)) == meta
    assert meta["onnx_opset"] == 17
