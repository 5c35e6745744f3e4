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


@pytest.fixture(scope="module")
def resnet_path(tmp_path_factory):
    from tao_deploy.testing import tiny_resnet

    path = tmp_path_factory.mktemp("models") / "resnet.onnx"
    onnx.save_model(tiny_resnet(), path)
    return path


def _ort_optimized(model, tmp_path) -> onnx.ModelProto:
    """The graph ONNX Runtime actually runs (after its fusions)."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return onnx.load(opts.optimized_model_filepath)


def test_cpu_int8_graph_folds_batchnorm_and_chains_the_backbone_in_uint8(resnet_path, tmp_path):
    """The CPU form: frozen BatchNorms (Mul / Add) folded into the Convs, the residual Add and the
    Relus in uint8 between them, int32 biases: ONNX Runtime runs the backbone as QLinearConv /
    QLinearAdd with no float step between; the head's MatMuls and keep-float layers stay float."""
    cal = Calibration(data=random_batches((4, 3, 16, 16), 4, seed=5), method="minmax", keep_float=("bbox_embed",))
    info = build_engine(resnet_path, tmp_path / "m.engine", "int8", calibration=cal, max_batch=4,
                        backend="onnxruntime")
    form = info.metadata["int8_graph"]
    assert form["name"] == "onnxruntime_cpu" and form["fold_constants"] and form["quantize_bias"]
    assert set(form["chain_ops"]) == {"Relu", "Add", "MaxPool"} and not form["activation_symmetric"]
    model = _payload_model(info.path)
    ops = [n.op_type for n in model.graph.node]
    assert "Mul" not in ops  # every BatchNorm scale went into its Conv
    producers = {o: n for n in model.graph.node for o in n.output}
    residual = next(n for n in model.graph.node if n.name == "block/residual")
    assert all(producers[i].op_type == "DequantizeLinear" for i in residual.input)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        bias = producers[conv.input[2]]
        assert bias.op_type == "DequantizeLinear" and inits[bias.input[0]].dtype == np.int32
    for name in ("head/proj/MatMul", "head/bbox_embed/MatMul"):
        mm = next(n for n in model.graph.node if n.name == name)
        assert all(i not in producers or producers[i].op_type != "DequantizeLinear" for i in mm.input)
    run = [n.op_type for n in _ort_optimized(model, tmp_path).graph.node]
    assert run.count("QLinearConv") == 3 and run.count("QLinearAdd") == 1
    assert run.count("DequantizeLinear") == 1 and run.count("QuantizeLinear") == 1  # one Q/DQ at each end
    sample = np.random.default_rng(9).random((2, 3, 16, 16), dtype=np.float32)
    out = load_engine(info.path).run({"input": sample})["boxes"]
    ref = _reference(resnet_path, {"input": sample})["boxes"]
    assert np.abs(out - ref).max() < 0.03  # boxes in [0, 1]


def test_tensorrt_int8_graph_keeps_its_form_and_shares_the_calibration_cache(resnet_path, tmp_path):
    """The TensorRT form is not folded (TensorRT fuses BatchNorm itself) and has Q/DQ on the
    inputs of Conv / MatMul only, float biases; it builds from the cache the CPU form wrote."""
    cache = tmp_path / "cal.bin"
    cal = Calibration(data=random_batches((4, 3, 16, 16), 4, seed=5), method="entropy", cache_file=cache)
    build_engine(resnet_path, tmp_path / "cpu.engine", "int8", calibration=cal, max_batch=4, backend="onnxruntime")
    info = build_engine(resnet_path, tmp_path / "trt.engine", "int8", calibration=Calibration(cache_file=cache),
                        max_batch=4, backend="onnxruntime", int8_graph="tensorrt")
    assert info.metadata["int8_graph"]["name"] == "tensorrt" and not info.metadata["int8_graph"]["fold_constants"]
    model = _payload_model(info.path)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Mul") == 3 and ops.count("Relu") == 4  # 3 BatchNorms, 3 backbone Relus + the head's
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("Conv", "MatMul"):
            assert all(producers[i] == "DequantizeLinear" for i in n.input[:2])  # data and weight
        if n.op_type == "Conv":  # no Q/DQ on Conv outputs: they feed the float BatchNorm
            assert all(producers[i] != "DequantizeLinear" for i in n.input[2:])
    q_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert not q_inputs & {o for n in model.graph.node if n.op_type == "Conv" for o in n.output}
    assert not any(onnx.numpy_helper.to_array(i).dtype == np.int32 for i in model.graph.initializer)


def test_cpu_int8_graph_from_a_cache_without_chain_tensors_keeps_those_nodes_float(resnet_path, tmp_path):
    """A cache that lacks a chain tensor's range (one written for the TensorRT form by an older
    build) still builds: the chain node without a range stays float instead of failing."""
    from tao_deploy.engine import calibration as cal

    model = onnx.load(resnet_path)
    batches = [{"input": b} for b in random_batches((4, 3, 16, 16), 4, seed=5)]
    amax = prec.compute_amax(model, _Reader(batches), "minmax")
    del amax["res"]  # the residual Add's output
    cache = tmp_path / "cal.bin"
    cal.write_cache(cache, amax, "minmax")
    info = build_engine(resnet_path, tmp_path / "m.engine", "int8", calibration=Calibration(cache_file=cache),
                        max_batch=4, backend="onnxruntime")
    built = _payload_model(info.path)
    producers = {o: n.op_type for n in built.graph.node for o in n.output}
    residual = next(n for n in built.graph.node if n.name == "block/residual")
    assert "QuantizeLinear" not in {n.op_type for n in built.graph.node if residual.output[0] in n.input}
    assert [n.op_type for n in built.graph.node].count("Conv") == 3
    assert all(producers[n.input[0]] == "DequantizeLinear" for n in built.graph.node if n.op_type == "Conv")


class _Reader:
    def __init__(self, batches):
        self.it = iter(batches)

    def get_next(self):
        return next(self.it, None)
