"""Bad input to `tao deploy detectnet_v2 gen_trt_engine | evaluate | inference`: each is one
TaoUserError line naming the file / field / value, raised before anything is built or run
(no engine file is left behind)."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_detectnet_v2 import RACCOON, SPEC, H, W, tiny_detectnet

from tao_core.data.tensorfile import TensorFileWriter
from tao_core.errors import TaoUserError
from tao_core.results.status import StatusLogger
from tao_deploy.detectnet_v2.cli import CLI
from tao_deploy.engine.builder import build_engine


def fails(task: str, args: list[str], match: str) -> str:
    with pytest.raises(TaoUserError, match=match) as info:
        CLI.resolve_task(task)([str(a) for a in args])
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def gen(model: Path, engine: Path, *extra) -> list:
    return ["-m", model, "--engine_file", engine, "--backend", "onnxruntime", *extra]


def dino_shaped(path: Path) -> Path:
    """A DINO-like graph (input `inputs`, outputs pred_logits / pred_boxes)."""
    nodes = [helper.make_node("ReduceMean", ["inputs"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Identity", ["m"], ["pred_logits"]), helper.make_node("Identity", ["m"], ["pred_boxes"])]
    graph = helper.make_graph(nodes, "dino", [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["N", 3, H, W])],
                              [helper.make_tensor_value_info("pred_logits", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def heads(path: Path, cov: int, bbox: int) -> Path:
    """tiny_detectnet with `cov` coverage and `bbox` bbox channels."""
    model = tiny_detectnet()
    rng = np.random.default_rng(1)
    new = {"wc": rng.standard_normal((cov, 8, 1, 1)), "wb": rng.standard_normal((bbox, 8, 1, 1)),
           "bb": np.full((1, bbox, 1, 1), 0.5)}
    for init in model.graph.initializer:
        if init.name in new:
            init.CopyFrom(numpy_helper.from_array(new[init.name].astype(np.float32), init.name))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = cov
    model.graph.output[1].type.tensor_type.shape.dim[1].dim_value = bbox
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dn_bad")
    (tmp / "images").mkdir()
    (tmp / "labels").mkdir()
    for img in sorted((RACCOON / "images").iterdir())[:2]:
        shutil.copy(img, tmp / "images" / img.name)
        shutil.copy(RACCOON / "labels" / (img.stem + ".txt"), tmp / "labels" / (img.stem + ".txt"))
    onnx.save(tiny_detectnet(), tmp / "model.onnx")
    (tmp / "spec.txt").write_text(SPEC)
    return tmp


def test_a_model_of_another_network_is_refused(work, tmp_path):
    engine = tmp_path / "x.engine"
    msg = fails("gen_trt_engine", gen(dino_shaped(tmp_path / "dino.onnx"), engine), "lack.*output_cov/Sigmoid")
    assert str(tmp_path / "dino.onnx") in msg
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    fails("gen_trt_engine", gen(tmp_path / "random.onnx", engine), r"random.onnx: not a valid ONNX model")
    fails("gen_trt_engine", gen(heads(tmp_path / "bbox3.onnx", 1, 3), engine),
          r"bbox3.onnx: output_cov/Sigmoid has 1 channels .* output_bbox/BiasAdd 3; .* 4 bbox channels per class")
    # the spec names 1 class, the model has 2 coverage channels
    fails("gen_trt_engine", gen(heads(tmp_path / "two.onnx", 2, 8), engine, "-e", work / "spec.txt"),
          r"two.onnx: the model predicts 2 class\(es\).*names 1: \['raccoon'\]")
    assert not engine.exists()


def test_evaluate_and_inference_refuse_an_engine_of_another_network(work, tmp_path):
    engine = tmp_path / "dino.engine"
    build_engine(dino_shaped(tmp_path / "dino.onnx"), engine, "fp32", backend="onnxruntime")
    fails("evaluate", ["-e", work / "spec.txt", "-m", engine, "-i", work / "images", "-l", work / "labels",
                       "-r", tmp_path / "ev"], r"dino.engine: not a DetectNet_v2 engine")
    two = tmp_path / "two.engine"  # a DetectNet_v2 engine of 2 classes, the spec's 1
    assert CLI.run("gen_trt_engine", [str(a) for a in gen(heads(tmp_path / "two.onnx", 2, 8), two)]) == 0
    fails("evaluate", ["-e", work / "spec.txt", "-m", two, "-i", work / "images", "-l", work / "labels",
                       "-r", tmp_path / "ev2"], r"two.engine: the model predicts 2 class\(es\).*target_classes names 1")
    assert not (tmp_path / "ev2" / "results.json").exists()


def test_dynamic_image_dims_are_refused(work, tmp_path):
    model = tiny_detectnet()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    onnx.save(model, tmp_path / "dyn.onnx")
    fails("gen_trt_engine", gen(tmp_path / "dyn.onnx", tmp_path / "d.engine"),
          r"dyn.onnx: input 'input_1' has dynamic C/H/W \['N', 3, 'H', 'W'\]")


def test_too_old_an_opset_is_refused(tmp_path):
    model = tiny_detectnet()
    model.opset_import[0].version = 6
    onnx.save(model, tmp_path / "op6.onnx")
    for extra in ([], ["--data_type", "int8", "--cal_cache_file", tmp_path / "none.bin"]):
        fails("gen_trt_engine", gen(tmp_path / "op6.onnx", tmp_path / "o.engine", *extra),
              r"op6.onnx: ONNX opset 6 is older than 7.*--target_opset 12")


def test_missing_label_folder(work, tmp_path):
    fails("evaluate", ["-e", work / "spec.txt", "-m", tmp_path / "x.engine", "-i", work / "images", "-l",
                       tmp_path / "no_labels", "-r", tmp_path / "ev"], r"-l/--label_dir: .*no_labels is not a directory")


def test_a_calibration_cache_of_another_model_is_refused(work, tmp_path):
    foreign = tmp_path / "foreign.bin"  # a valid cache of tensors this model does not have
    foreign.write_text("TRT-8600-EntropyCalibration2\nconv_a: 3c010204\nconv_b: 3c010204\n")
    before = foreign.read_bytes()
    engine = tmp_path / "int8.engine"
    fails("gen_trt_engine", gen(work / "model.onnx", engine, "--data_type", "int8", "--cal_cache_file", foreign),
          r"calibration cache .*foreign.bin: .* no scale for tensor\(s\) \['input_1', 'r1'\]")  # r2: heads are float
    # a QAT model's learned scales are never written over a cache that holds other ones
    onnx.save(tiny_detectnet(qat_scales=(0.02, 0.05)), tmp_path / "qat.onnx")
    fails("gen_trt_engine", gen(tmp_path / "qat.onnx", engine, "--data_type", "int8", "--cal_cache_file", foreign),
          r"--cal_cache_file .*foreign.bin exists and does not hold this QAT model's learned scales")
    assert foreign.read_bytes() == before and not engine.exists()
    tensorfile = tmp_path / "small.tensorfile"  # made for a 64x64 input
    with TensorFileWriter(tensorfile) as w:
        w.write(np.zeros((4, 3, 64, 64), np.float32))
    fails("gen_trt_engine", gen(work / "model.onnx", engine, "--data_type", "int8", "--cal_data_file", tensorfile,
                                "--batches", "1", "--batch_size", "4", "--max_batch_size", "4"),
          r"small.tensorfile: record 0 has batch shape \(4, 3, 64, 64\).*expected 96")
    assert not engine.exists()


def _spec_with(tmp_path: Path, train_images: Path, val_images: Path) -> Path:
    """The test SPEC with another training image folder and a validation_data_source (in place of
    validation_fold: the two are a oneof)."""
    spec = SPEC.replace("  validation_fold: 0\n", "").replace(f'image_directory_path: "{RACCOON / "images"}" }}',
                        f'image_directory_path: "{train_images}" }}\n  validation_data_source {{ tfrecords_path: '
                        f'"unused*" image_directory_path: "{val_images}" }}')
    path = tmp_path / f"spec_{len(list(tmp_path.glob('spec_*')))}.txt"
    path.write_text(spec)
    return path


def test_validation_and_calibration_folders_of_the_spec_are_checked(work, tmp_path):
    engine = tmp_path / "int8.engine"
    int8 = ["--data_type", "int8", "--batch_size", "1", "--batches", "2"]
    # validation_data_source is where INT8 is checked against FP32 when calibration uses every image
    spec = _spec_with(tmp_path, work / "images", tmp_path / "no_val")
    fails("gen_trt_engine", gen(work / "model.onnx", engine, "-e", spec, *int8),
          r"-e spec: dataset_config.validation_data_source.image_directory_path .*no_val is not a directory")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "broken.jpg").write_bytes(b"not a jpeg")
    spec = _spec_with(tmp_path, work / "images", tmp_path / "val")
    fails("gen_trt_engine", gen(work / "model.onnx", engine, "-e", spec, *int8),
          r"validation_data_source.image_directory_path: image .*broken.jpg cannot be read")
    # the spec's training images calibrate when no --cal_image_dir is given
    spec = _spec_with(tmp_path, tmp_path / "no_train", work / "images")
    fails("gen_trt_engine", gen(work / "model.onnx", engine, "-e", spec, *int8),
          r"calibration image directory .*no_train does not exist")
    assert not engine.exists()
    # good folders: the check runs on the validation images (calibration took both training ones)
    (tmp_path / "val" / "broken.jpg").unlink()
    shutil.copy(next((work / "images").iterdir()), tmp_path / "val" / "one.jpg")
    spec = _spec_with(tmp_path, work / "images", tmp_path / "val")
    assert CLI.run("gen_trt_engine", [str(a) for a in gen(work / "model.onnx", engine, "-e", spec, *int8,
                                                          "-r", tmp_path / "r")]) == 0
    kpi = [line["kpi"] for line in StatusLogger(tmp_path / "r", "gen_trt_engine").read() if line.get("kpi")][-1]
    assert kpi["agreement_images"] == 1.0
