"""FP32 / FP16 / INT8 engines on the ONNX Runtime backend against ORT on the original model."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tao_deploy import Calibration, build_engine, load_engine
from tao_deploy.engine import precision as prec
from tao_deploy.engine.engine_file import read_engine
from tao_deploy.testing import random_batches, tiny_cnn


def _reference(path, feed):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def _payload_model(engine_path) -> onnx.ModelProto:
    return onnx.load_model_from_string(read_engine(engine_path)[1])


def _types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return inferred, types


def _rel_err(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def test_fp32_engine_matches_onnxruntime(cnn_path, tmp_path, sample):
    info = build_engine(cnn_path, tmp_path / "m.engine", "fp32", max_batch=4, opt_batch=2)
    assert info.backend == "onnxruntime" and info.precision == "fp32"
    out = load_engine(info.path).run({"input": sample})
    for name, ref in _reference(cnn_path, {"input": sample}).items():
        np.testing.assert_allclose(out[name], ref, rtol=0, atol=1e-6)


def test_fp16_engine_close_and_sensitive_ops_stay_fp32(cnn_path, tmp_path, sample):
    info = build_engine(cnn_path, tmp_path / "m.engine", "FP16", max_batch=2)
    out = load_engine(info.path).run({"input": sample})
    ref = _reference(cnn_path, {"input": sample})
    for name in ref:
        assert out[name].dtype == np.float32  # I/O stays float32
        np.testing.assert_allclose(out[name], ref[name], rtol=0, atol=5e-3)

    model, types = _types(_payload_model(info.path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    by_op = {n.op_type: n for n in model.graph.node}
    assert by_op["Conv"] and types[by_op["Conv"].input[1]] == f16  # the heavy work is FP16
    for op in ("Softmax", "LayerNormalization"):
        node = by_op[op]
        assert types[node.input[0]] == f32 and types[node.output[0]] == f32, op
    assert all(types[i.name] == f32 for i in model.graph.input)
    assert all(types[o.name] == f32 for o in model.graph.output)
    # no float32 -> float16 -> float32 round trip left on the kept outputs
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    producers = {o: n for n in model.graph.node for o in n.output}
    for c in casts:
        p = producers.get(c.input[0])
        assert not (p is not None and p.op_type == "Cast" and c.attribute[0].i == f32 and p.attribute[0].i == f16)


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_int8_engine_has_qdq_and_tracks_fp32(cnn_path, tmp_path, sample, method):
    cache = tmp_path / "cal.bin"
    cal = Calibration(data=random_batches((4, 3, 16, 16), 6, seed=3), method=method, cache_file=cache)
    info = build_engine(cnn_path, tmp_path / "m.engine", "int8", calibration=cal, max_batch=4, int8_graph="tensorrt")
    assert info.metadata["int8_graph"]["name"] == "tensorrt"
    model = _payload_model(info.path)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # activations symmetric: every zero point is 0 (what TensorRT requires)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(np.all(z == 0) and z.dtype == np.int8 for z in zps)

    out = load_engine(info.path).run({"input": sample})
    ref = _reference(cnn_path, {"input": sample})
    assert _rel_err(out["logits"], ref["logits"]) < 0.05
    assert np.corrcoef(out["logits"].ravel(), ref["logits"].ravel())[0, 1] > 0.99
    assert (
        cache.read_text().splitlines()[0].endswith("MinMaxCalibration" if method == "minmax" else "EntropyCalibration2")
    )


def test_onnxruntime_backend_gets_the_cpu_int8_graph(cnn_path, tmp_path, sample):
    """auto on ONNX Runtime: uint8 activations x int8 weights, Q/DQ on outputs too (so ORT fuses
    QLinearConv), 7-bit weights without VNNI; recorded in the engine metadata; still tracks FP32."""
    cal = Calibration(data=random_batches((4, 3, 16, 16), 6, seed=3), method="minmax")
    info = build_engine(cnn_path, tmp_path / "m.engine", "int8", calibration=cal, max_batch=4, backend="onnxruntime")
    form = info.metadata["int8_graph"]
    assert form["name"] == "onnxruntime_cpu" and form["activation_type"] == "uint8" and not form["inputs_only"]
    assert form["reduce_range"] == (not prec.cpu_has_vnni())
    model = _payload_model(info.path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q and all(inits[n.input[2]].dtype == np.uint8 for n in q if len(n.input) > 2)
    consumers = {i for n in model.graph.node for i in n.input}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert any(n.input[0] == conv.output[0] for n in q) and conv.output[0] in consumers  # output quantized
    out = load_engine(info.path).run({"input": sample})
    ref = _reference(cnn_path, {"input": sample})
    assert _rel_err(out["logits"], ref["logits"]) < 0.05


def test_keep_float_patterns_select_by_op_type_and_name(cnn_path):
    model = onnx.load(cnn_path)
    assert prec.keep_float_nodes(model, ["op:Gemm"]) == ("fc",)
    assert prec.keep_float_nodes(model, ["conv[12]$"]) == ("conv1", "conv2")
    assert prec.keep_float_nodes(model, []) == ()
    from tao_core.errors import TaoUserError

    with pytest.raises(TaoUserError, match="regular expression"):
        prec.keep_float_nodes(model, ["conv("])


def test_int8_keep_float_keeps_matching_nodes_float(cnn_path, tmp_path, cal_batches):
    cal = Calibration(data=cal_batches, method="minmax", keep_float=("op:Gemm",))
    info = build_engine(cnn_path, tmp_path / "m.engine", "int8", calibration=cal)
    assert info.metadata["int8_graph"]["keep_float"] == ["op:Gemm"]
    assert info.metadata["int8_graph"]["nodes_kept_float"] == 1
    model = _payload_model(info.path)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    fc = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert all(producers.get(i) != "DequantizeLinear" for i in fc.input)


def test_int8_gridsample_stays_float(grid_path, tmp_path):
    rng = np.random.default_rng(0)
    batches = [
        {
            "image": rng.random((2, 3, 16, 16), dtype=np.float32),
            "grid": rng.uniform(-1, 1, (2, 8, 8, 2)).astype(np.float32),
        }
        for _ in range(4)
    ]
    info = build_engine(grid_path, tmp_path / "g.engine", "int8", calibration=Calibration(data=batches), max_batch=2,
                        int8_graph="tensorrt")
    model = _payload_model(info.path)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    gs = next(n for n in model.graph.node if n.op_type == "GridSample")
    assert all(producers.get(i) != "DequantizeLinear" for i in gs.input)
    assert [n.op_type for n in model.graph.node].count("DequantizeLinear") >= 2  # the Convs are quantized
    feed = batches[0]
    out = load_engine(info.path).run(feed)["out"]
    ref = _reference(grid_path, feed)["out"]
    assert _rel_err(out, ref) < 0.05


def test_int8_exclude_nodes_keeps_them_float(cnn_path, tmp_path, cal_batches):
    cal = Calibration(data=cal_batches, method="minmax", exclude_nodes=("fc",))
    info = build_engine(cnn_path, tmp_path / "m.engine", "int8", calibration=cal)
    model = _payload_model(info.path)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    fc = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert all(producers.get(i) != "DequantizeLinear" for i in fc.input)


def test_normalize_precision_rejects_unknown():
    from tao_core.errors import TaoUserError

    assert prec.normalize_precision("INT8") == "int8"
    with pytest.raises(TaoUserError, match="BF16|bf16"):
        prec.normalize_precision("bf16")


def test_prepare_onnx_fp16_runs_in_ort():
    from tao_deploy import prepare_onnx

    m16 = prepare_onnx(tiny_cnn(), "fp16")
    onnx.checker.check_model(m16)
    x = np.ones((1, 3, 16, 16), np.float32)
    out = ort.InferenceSession(m16.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert all(o.dtype == np.float32 for o in out)
