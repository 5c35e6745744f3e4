"""`tao deploy detectnet_v2 gen_trt_engine | evaluate | inference` on a tiny DetectNet_v2-shaped
ONNX (onnx.helper, no TensorFlow) and raccoon KITTI images: FP32 engine AP equals the ONNX's
own AP through tao-core, INT8 from a tensorfile, a QAT (Q/DQ) model's scales as the cache."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tao_core.data.tensorfile import TensorFileWriter
from tao_core.errors import TaoUserError
from tao_deploy.detectnet_v2.cli import CLI

REPO = Path(__file__).resolve().parents[3]
RACCOON = REPO / "examples" / "data" / "raccoon" / "val"
H, W = 96, 128


def tiny_detectnet(qat_scales: tuple[float, float] | None = None, seed: int = 0) -> onnx.ModelProto:
    """input_1 -> Conv/4 -> Relu -> Conv/4 -> Relu -> 1x1 heads: output_cov/Sigmoid, output_bbox/BiasAdd.
    With `qat_scales`, uint8 Q/DQ pairs (zero point 128) follow the two Relus, as tf2onnx writes QAT."""
    rng = np.random.default_rng(seed)

    def init(name, shape, s=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)

    inits = [init("w1", (8, 3, 3, 3)), init("w2", (8, 8, 3, 3)), init("wc", (1, 8, 1, 1)), init("wb", (4, 8, 1, 1)),
             numpy_helper.from_array(np.array([0.5, 0.5, 0.5, 0.5], np.float32).reshape(1, 4, 1, 1), "bb")]
    nodes = [helper.make_node("Conv", ["input_1", "w1"], ["c1"], name="conv1", strides=[4, 4], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    feed = "r1"
    if qat_scales:
        inits += [numpy_helper.from_array(np.array(qat_scales[0], np.float32), "s1"),
                  numpy_helper.from_array(np.array(128, np.uint8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["r1", "s1", "z"], ["q1"], name="q1"),
                  helper.make_node("DequantizeLinear", ["q1", "s1", "z"], ["d1"], name="d1")]
        feed = "d1"
    nodes += [helper.make_node("Conv", [feed, "w2"], ["c2"], name="conv2", strides=[4, 4], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c2"], ["r2"], name="relu2")]
    feed = "r2"
    if qat_scales:
        inits.append(numpy_helper.from_array(np.array(qat_scales[1], np.float32), "s2"))
        nodes += [helper.make_node("QuantizeLinear", ["r2", "s2", "z"], ["q2"], name="q2"),
                  helper.make_node("DequantizeLinear", ["q2", "s2", "z"], ["d2"], name="d2")]
        feed = "d2"
    nodes += [helper.make_node("Conv", [feed, "wc"], ["cc"], name="conv_cov"),
              helper.make_node("Sigmoid", ["cc"], ["output_cov/Sigmoid"], name="output_cov/Sigmoid"),
              helper.make_node("Conv", [feed, "wb"], ["cb"], name="conv_bbox"),
              helper.make_node("Add", ["cb", "bb"], ["output_bbox/BiasAdd"], name="output_bbox/BiasAdd")]
    graph = helper.make_graph(
        nodes, "detectnet", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor_value_info("output_cov/Sigmoid", TensorProto.FLOAT, ["N", 1, H // 16, W // 16]),
         helper.make_tensor_value_info("output_bbox/BiasAdd", TensorProto.FLOAT, ["N", 4, H // 16, W // 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])  # TAO export default
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


SPEC = f"""dataset_config {{
  data_sources {{ tfrecords_path: "unused*" image_directory_path: "{RACCOON / 'images'}" }}
  image_extension: "jpg"
  target_class_mapping {{ key: "raccoon" value: "raccoon" }}
  validation_fold: 0
}}
augmentation_config {{ preprocessing {{ output_image_width: {W} output_image_height: {H} output_image_channel: 3
                                       enable_auto_resize: true }} }}
postprocessing_config {{ target_class_config {{ key: "raccoon" value {{ clustering_config {{
  coverage_threshold: 0.3 dbscan_eps: 0.3 dbscan_min_samples: 0.05 minimum_bounding_box_height: 2 }} }} }} }}
model_config {{ arch: "resnet" num_layers: 10 objective_set {{ cov {{}} bbox {{ scale: 35.0 offset: 0.5 }} }} }}
evaluation_config {{ average_precision_mode: INTEGRATE
  minimum_detection_ground_truth_overlap {{ key: "raccoon" value: 0.1 }}
  evaluation_box_config {{ key: "raccoon" value {{ minimum_height: 2 maximum_height: 9999 minimum_width: 2
                                                  maximum_width: 9999 }} }} }}
cost_function_config {{ target_classes {{ name: "raccoon" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives {{ name: "cov" initial_weight: 1.0 weight_target: 1.0 }}
    objectives {{ name: "bbox" initial_weight: 10.0 weight_target: 1.0 }} }} }}
training_config {{ batch_size_per_gpu: 4 num_epochs: 1 }}
bbox_rasterizer_config {{ target_class_config {{ key: "raccoon" value {{ cov_center_x: 0.5 cov_center_y: 0.5
  cov_radius_x: 0.4 cov_radius_y: 0.4 bbox_min_radius: 1.0 }} }} deadzone_radius: 0.67 }}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dn")
    images, labels = tmp / "images", tmp / "labels"
    images.mkdir()
    labels.mkdir()
    for img in sorted((RACCOON / "images").iterdir())[:6]:
        shutil.copy(img, images / img.name)
        shutil.copy(RACCOON / "labels" / (img.stem + ".txt"), labels / (img.stem + ".txt"))
    onnx.save(tiny_detectnet(), tmp / "model.onnx")
    (tmp / "labels.txt").write_text("raccoon\n")
    (tmp / "spec.txt").write_text(SPEC)
    return tmp


def _evaluate(work, engine, out):
    args = ["-e", str(work / "spec.txt"), "-m", str(engine), "-i", str(work / "images"), "-l", str(work / "labels"),
            "-r", str(out)]
    assert CLI.run("evaluate", args) == 0
    return json.loads((out / "results.json").read_text())


def test_fp32_engine_ap_is_the_onnx_ap(work):
    from tao_core.specs.detectnet_v2 import SPEC as DN
    from tao_deploy.detectnet_v2.tasks import evaluate_frames, kitti_frames

    engine = work / "fp32.engine"
    assert CLI.run("gen_trt_engine", ["-m", str(work / "model.onnx"), "--engine_file", str(engine),
                                      "--backend", "onnxruntime", "--max_batch_size", "4"]) == 0
    result = _evaluate(work, engine, work / "eval_fp32")
    assert result["engine"]["precision"] == "fp32" and result["num_ground_truth"]["raccoon"] >= 6
    # the same frames through a plain ONNX Runtime session of the exported model
    session = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
    experiment = DN.load("evaluate", str(work / "spec.txt"))
    frames = kitti_frames(experiment, str(work / "images"), str(work / "labels"))
    direct = evaluate_frames(lambda x: session.run(None, {"input_1": x}), experiment, frames, 3)
    assert result["per_class_ap"] == pytest.approx(direct["per_class_ap"], abs=1e-9)
    with pytest.raises(TaoUserError, match="already exists"):  # a named engine is never overwritten
        CLI.resolve_task("gen_trt_engine")(["-m", str(work / "model.onnx"), "--engine_file", str(engine)])


def test_int8_from_tensorfile_writes_a_tensorrt_cache(work):
    rng = np.random.default_rng(0)
    tensorfile = work / "cal.tensorfile"
    with TensorFileWriter(tensorfile) as w:
        for _ in range(3):
            w.write(rng.random((4, 3, H, W), dtype=np.float32))
    cache, engine = work / "cal.bin", work / "int8.engine"
    args = ["-m", str(work / "model.onnx"), "-e", str(work / "spec.txt"), "--data_type", "int8", "--cal_data_file",
            str(tensorfile), "--cal_cache_file", str(cache), "--batch_size", "4", "--batches", "3",
            "--engine_file", str(engine), "--backend", "onnxruntime", "--max_batch_size", "4"]
    assert CLI.run("gen_trt_engine", args) == 0
    lines = cache.read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("EntropyCalibration2")
    assert any(line.startswith("input_1: ") for line in lines[1:])
    # the output heads stay float (engine.head_convs), the backbone is INT8
    from tao_deploy.detectnet_v2.engine import head_convs
    from tao_deploy.engine.engine_file import read_engine

    assert head_convs(tiny_detectnet()) == ["conv_cov", "conv_bbox"]
    graph = onnx.load_model_from_string(read_engine(engine)[1]).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    weight_from = {n.name: producer.get(n.input[1]) for n in graph.node if n.op_type == "Conv"}
    assert weight_from["conv2"] == "DequantizeLinear"
    assert weight_from["conv_cov"] is None and weight_from["conv_bbox"] is None  # float initializers
    # checked against FP32 on the spec's images left aside from calibration: agreement and speed in status.json
    status = [json.loads(line) for line in (work / "gen_trt_engine" / "status.json").open()]
    kpi = [s["kpi"] for s in status if "agreement_mean_iou" in (s.get("kpi") or {})][-1]
    assert kpi["agreement_images"] == 8.0 and kpi["agreement_speedup_vs_fp32"] > 0
    result = _evaluate(work, engine, work / "eval_int8")
    assert result["engine"]["precision"] == "int8" and 0.0 <= result["mAP"] <= 1.0


def test_qat_scales_become_the_cache_and_the_qdq_graph(work, tmp_path):
    from tao_deploy.engine.calibration import read_cache
    from tao_deploy.engine.engine_file import read_engine

    s1, s2 = 0.02, 0.05
    model = tmp_path / "qat.onnx"
    onnx.save(tiny_detectnet(qat_scales=(s1, s2)), model)
    cache, engine = tmp_path / "qat.bin", tmp_path / "qat.engine"
    # no calibration data at all: the learned scales are the calibration
    args = ["-m", str(model), "--data_type", "int8", "--cal_cache_file", str(cache), "--engine_file", str(engine),
            "--backend", "onnxruntime"]
    assert CLI.run("gen_trt_engine", args) == 0
    scales = read_cache(cache).scales
    # uint8 zero point 128: the pair covers [-128 s, 127 s], i.e. amax 128 s, cache scale amax / 127
    assert scales["r1"] == pytest.approx(s1 * 128 / 127, rel=1e-6)
    assert scales["r2"] == pytest.approx(s2 * 128 / 127, rel=1e-6)
    assert struct.pack(">f", scales["r1"]).hex() in cache.read_text()
    meta, payload = read_engine(engine)
    assert meta["precision"] == "int8" and meta["qat"] is True
    built = onnx.load_from_string(payload)
    inits = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    q_scales = {n.input[0]: float(inits[n.input[1]]) for n in built.graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] in ("r1", "r2")}
    # the engine's Q/DQ (symmetric int8 on the conv inputs) carries exactly the cache's scales
    assert q_scales == pytest.approx({"r1": scales["r1"], "r2": scales["r2"]}, rel=1e-6)
    assert not any(n.name == "conv1" and n.input[0].endswith("DequantizeLinear") for n in built.graph.node)
    # --force_ptq ignores the learned scales and needs calibration data
    with pytest.raises(TaoUserError, match="calibration"):
        CLI.resolve_task("gen_trt_engine")(["-m", str(model), "--data_type", "int8", "--force_ptq", "--engine_file",
                                            str(tmp_path / "ptq.engine"), "--backend", "onnxruntime"])


def test_inference_writes_kitti_labels_and_images(work):
    engine = work / "infer.engine"
    assert CLI.run("gen_trt_engine", ["-m", str(work / "model.onnx"), "--engine_file", str(engine),
                                      "--backend", "onnxruntime"]) == 0
    spec = work / "infer.txt"
    spec.write_text(f"""inferencer_config {{ target_classes: "raccoon" image_width: {W} image_height: {H}
  image_channels: 3 batch_size: 2 tensorrt_config {{ trt_engine: "{engine}" }} }}
bbox_handler_config {{ kitti_dump: true disable_overlay: false
  classwise_bbox_handler_config {{ key: "default" value {{ confidence_model: "aggregate_cov" output_map: "animal"
    clustering_config {{ coverage_threshold: 0.3 dbscan_eps: 0.3 dbscan_min_samples: 0.05
                         minimum_bounding_box_height: 2 }} }} }} }}
""")
    out = work / "infer_out"
    assert CLI.run("inference", ["-e", str(spec), "-i", str(work / "images"), "-r", str(out)]) == 0
    stems = sorted(p.stem for p in (work / "images").iterdir())
    assert sorted(p.stem for p in (out / "labels").iterdir()) == stems
    assert sorted(p.stem for p in (out / "images_annotated").iterdir()) == stems
    rows = [r.split() for p in (out / "labels").iterdir() for r in p.read_text().splitlines()]
    assert rows and all(len(r) == 16 and r[0] == "animal" for r in rows)


def test_evaluate_needs_kitti_folders_and_matching_classes(work, tmp_path):
    with pytest.raises(TaoUserError, match="-i IMAGE_DIR and -l LABEL_DIR"):
        CLI.resolve_task("evaluate")(["-e", str(work / "spec.txt"), "-m", str(work / "x.engine")])
    bad = tmp_path / "labels"
    bad.mkdir()
    with pytest.raises(TaoUserError, match="no KITTI label for 6 image"):
        CLI.resolve_task("evaluate")(["-e", str(work / "spec.txt"), "-m", str(work / "x.engine"), "-i",
                                      str(work / "images"), "-l", str(bad)])


def test_tasks_run_without_tensorflow(work, tmp_path):
    engine = tmp_path / "iso.engine"
    code = (
        "import sys\n"
        "from tao_deploy.detectnet_v2.cli import CLI\n"
        f"CLI.run('gen_trt_engine', ['-m', {str(work / 'model.onnx')!r}, '--engine_file', {str(engine)!r},"
        " '--backend', 'onnxruntime'])\n"
        f"CLI.run('evaluate', ['-e', {str(work / 'spec.txt')!r}, '-m', {str(engine)!r}, '-i',"
        f" {str(work / 'images')!r}, '-l', {str(work / 'labels')!r}, '-r', {str(tmp_path / 'ev')!r}])\n"
        "loaded = [m for m in ('tensorflow', 'tf_keras', 'keras', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ev" / "results.json").is_file()


def test_learned_scales_of_int8_pairs_and_folded_weights():
    """int8 zero point 0: amax = 128 s; a pair on a weight is folded into it (its fake-quantized values)."""
    from tao_deploy.engine.qat_scales import has_qdq, learned_scales

    w = np.array([[[[0.3]]], [[[-0.71]]]], np.float32)  # (2, 1, 1, 1)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0.01, np.float32), "sx"),
             numpy_helper.from_array(np.array(0, np.int8), "zx"),
             numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "sw"),
             numpy_helper.from_array(np.array([0, 0], np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["qx"]),
             helper.make_node("DequantizeLinear", ["qx", "sx", "zx"], ["dx"]),
             helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["qw"], axis=0),
             helper.make_node("DequantizeLinear", ["qw", "sw", "zw"], ["dw"], axis=0),
             helper.make_node("Conv", ["dx", "dw"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    assert has_qdq(model)
    stripped, amax = learned_scales(model)
    assert amax == pytest.approx({"x": 0.01 * 128})
    assert not has_qdq(stripped) and [n.op_type for n in stripped.graph.node] == ["Conv"]
    conv = stripped.graph.node[0]
    assert conv.input[0] == "x"
    weight = numpy_helper.to_array(next(i for i in stripped.graph.initializer if i.name == conv.input[1]))
    assert weight.ravel() == pytest.approx([0.3, -0.8])  # round(0.3 / 0.1) * 0.1, round(-0.71 / 0.2) * 0.2
    x = np.random.default_rng(0).random((1, 1, 2, 2), dtype=np.float32)
    y = ort.InferenceSession(stripped.SerializeToString()).run(None, {"x": x})[0]
    assert y == pytest.approx(x * weight.reshape(1, 2, 1, 1), rel=1e-6)


@pytest.mark.parametrize("qat", [False, True])
def test_tensorrt_engines_follow_the_onnx(work, tmp_path, qat):
    """The same builds on TensorRT (skipped without tensorrt and an NVIDIA GPU)."""
    from tao_deploy.backends import tensorrt_backend
    from tao_deploy.detectnet_v2.engine import EnginePredictor, build_detectnet_engine

    reason = tensorrt_backend.unavailable_reason()
    if reason:
        pytest.skip(f"TensorRT / NVIDIA GPU not available ({reason})")
    model = tiny_detectnet(qat_scales=(0.02, 0.05) if qat else None)
    x = np.random.default_rng(1).random((2, 3, H, W), dtype=np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input_1": x})
    data = tmp_path / "cal.tensorfile"
    with TensorFileWriter(data) as w:
        w.write(np.random.default_rng(2).random((4, 3, H, W), dtype=np.float32))
    for precision, tol in (("fp32", 1e-4), ("int8", 0.1)):
        engine = tmp_path / f"{precision}.engine"
        info = build_detectnet_engine(model.SerializeToString(), engine, precision, backend="tensorrt",
                                      cal_data_file=str(data), batch_size=4, batches=1, max_batch_size=2,
                                      cal_cache_file=str(tmp_path / f"{precision}.bin"))
        assert info.backend == "tensorrt"
        with EnginePredictor(engine) as predict:
            cov, bbox = predict(x)
        assert np.abs(cov - ref[0]).max() < tol and np.abs(bbox - ref[1]).max() / np.abs(ref[1]).max() < tol
