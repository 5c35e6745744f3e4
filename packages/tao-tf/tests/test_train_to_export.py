"""train (checkpoint, resume, status.json) -> evaluate -> inference -> export (ONNX Runtime parity) on 12 images."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import experiment_spec, export_spec, make_kitti

from tao_core.errors import TaoUserError
from tao_deploy.detectnet_v2.cli import CLI as DEPLOY
from tao_tf.detectnet_v2.cli import CLI

KEY = "tlt_encode"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Convert, train 1 epoch, then re-run with 2 epochs: the second run must resume at epoch 1."""
    tmp = tmp_path_factory.mktemp("dn")
    root = make_kitti(tmp / "data", 12)
    (tmp / "convert.txt").write_text(export_spec(root, shards=1, val_split=25))
    CLI.run("dataset_convert", ["-d", str(tmp / "convert.txt"), "-o", str(tmp / "tfr" / "rac")])
    spec = tmp / "spec.txt"
    results = tmp / "results"
    spec.write_text(experiment_spec(f"{tmp}/tfr/rac*", root, epochs=1, first_validation=1))
    CLI.run("train", ["-e", str(spec), "-r", str(results), "-k", KEY])
    first_run = (results / "weights" / "model_epoch_001.tlt").read_bytes()
    spec.write_text(experiment_spec(f"{tmp}/tfr/rac*", root, epochs=2, first_validation=2))
    CLI.run("train", ["-e", str(spec), "-r", str(results), "-k", KEY])
    return {"tmp": tmp, "root": root, "spec": spec, "results": results, "first_run": first_run}


def test_train_writes_checkpoints_status_and_resumes(trained):
    results = trained["results"]
    weights = results / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["model.tlt", "model_epoch_001.tlt", "model_epoch_002.tlt"]
    assert (weights / "model_epoch_001.tlt").read_bytes() == trained["first_run"]  # not retrained on resume
    status = [json.loads(line) for line in (results / "train" / "status.json").open()]
    epochs = [s["epoch"] for s in status if s["status"] == "RUNNING"]
    assert epochs == [1, 2]  # run 1: epoch 1; run 2 resumed and trained epoch 2 only
    assert [s["status"] for s in status].count("SUCCESS") == 2
    last = [s for s in status if s.get("epoch") == 2][0]
    assert last["max_epoch"] == 2 and "eta" in last
    assert np.isfinite(last["kpi"]["loss"]) and "raccoon" in last["kpi"]  # validation AP at epoch 2
    log = (results / "train" / "train.log").read_text()
    assert "Resuming training from" in log and "model_epoch_001.tlt (epoch 1)" in log
    assert "Mean average_precision (in %)" in log
    assert any((results / "events").iterdir())  # TensorBoard events


def test_checkpoint_is_encrypted_and_wrong_key_is_clear(trained):
    from tao_tf.detectnet_v2.model.io import load_model

    path = str(trained["results"] / "weights" / "model.tlt")
    assert not Path(path).read_bytes().startswith(b"\x89HDF")
    model, meta, _ = load_model(path, KEY)
    assert meta["classes"] == ["raccoon"] and meta["epoch"] == 2
    with pytest.raises(TaoUserError, match="key"):
        load_model(path, "wrong")


def test_evaluate_task(trained):
    results = trained["results"]
    model = str(results / "weights" / "model.tlt")
    assert CLI.run("evaluate", ["-e", str(trained["spec"]), "-m", model, "-k", KEY, "-r", str(results)]) == 0
    res = json.loads((results / "evaluate" / "results.json").read_text())
    assert set(res["per_class_ap"]) == {"raccoon"} and 0.0 <= res["mAP"] <= 1.0
    assert res["ap_mode"] == "integrate" and res["num_ground_truth"]["raccoon"] == 3  # fold 0 = 3 frames
    status = [json.loads(line) for line in (results / "evaluate" / "status.json").open()]
    assert "mean average precision" in status[-2]["kpi"]


def test_inference_task_writes_labels_and_images(trained, tmp_path):
    model = trained["results"] / "weights" / "model.tlt"
    spec = tmp_path / "infer.txt"
    spec.write_text(f"""inferencer_config {{
  target_classes: "raccoon"
  image_width: 128 image_height: 96 image_channels: 3 batch_size: 4
  tlt_config {{ model: "{model}" }}
}}
bbox_handler_config {{
  kitti_dump: true disable_overlay: false overlay_linewidth: 2
  classwise_bbox_handler_config {{ key: "default" value {{ confidence_model: "aggregate_cov" output_map: "animal"
      bbox_color {{ R: 0 G: 255 B: 0 }}
      clustering_config {{ coverage_threshold: 0.0 dbscan_eps: 0.3 dbscan_min_samples: 0.05
                           minimum_bounding_box_height: 1 clustering_algorithm: NMS nms_iou_threshold: 0.3 }} }} }}
}}
""")
    out = tmp_path / "out"
    images = trained["root"] / "images"
    assert CLI.run("inference", ["-e", str(spec), "-i", str(images), "-o", str(out), "-k", KEY]) == 0
    stems = sorted(p.stem for p in images.iterdir())
    assert sorted(p.stem for p in (out / "labels").iterdir()) == stems
    assert sorted(p.stem for p in (out / "images_annotated").iterdir()) == stems
    lines = [line.split() for p in (out / "labels").iterdir() for line in p.read_text().splitlines()]
    # Every line is a KITTI row of the mapped class. Whether any box survives depends on the few-step
    # model (a run in CI predicted only degenerate boxes), so the count is not asserted here.
    assert all(len(fields) == 16 and fields[0] == "animal" for fields in lines)


def test_export_onnx_names_and_runtime_parity(trained, tmp_path):
    model = trained["results"] / "weights" / "model.tlt"
    out = tmp_path / "model.onnx"
    args = ["-m", str(model), "-k", KEY, "-o", str(out), "-e", str(trained["spec"]), "--gen_ds_config"]
    assert CLI.run("export", args) == 0
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ["input_1"]
    assert [o.name for o in proto.graph.output] == ["output_cov/Sigmoid", "output_bbox/BiasAdd"]
    dims = [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in proto.graph.output]
    assert dims[0][1:] == [1, 6, 8] and dims[1][1:] == [4, 6, 8] and isinstance(dims[0][0], str)  # dynamic batch
    status = [json.loads(line) for line in (tmp_path / "export" / "status.json").open()]
    diffs = status[-2]["kpi"]
    assert max(diffs.values()) < 1e-4, diffs
    ds = (tmp_path / "nvinfer_config.txt").read_text()
    assert "output-blob-names=output_cov/Sigmoid;output_bbox/BiasAdd" in ds and "infer-dims=3;96;128" in ds
    assert (tmp_path / "labels.txt").read_text() == "raccoon\n"
    etlt = tmp_path / "model.etlt"
    CLI.run("export", ["-m", str(model), "-k", KEY, "-o", str(etlt)])
    from tao_core.etlt import read_etlt

    name, onnx_bytes = read_etlt(etlt, KEY)
    assert name == "input_1" and onnx.load_from_string(onnx_bytes).graph.output[0].name == "output_cov/Sigmoid"


def test_evaluate_rejects_a_spec_of_other_classes(trained, tmp_path):
    text = trained["spec"].read_text().replace('name: "raccoon"', 'name: "racoon"')
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    with pytest.raises(TaoUserError):
        CLI.resolve_task("evaluate")(["-e", str(bad), "-m", str(trained["results"] / "weights" / "model.tlt"),
                                      "-k", KEY])  # fmt: skip


def test_calibration_tensorfile_round_trip(trained, tmp_path):
    from tao_core.data.tensorfile import TensorFile

    out = tmp_path / "cal.tensorfile"
    args = ["-e", str(trained["spec"]), "-o", str(out), "-m", "-1"]
    assert CLI.run("calibration_tensorfile", args) == 0
    with TensorFile(out) as tf_file:
        assert len(tf_file) == 2  # 9 training frames, batch 4: two full batches
        batch = tf_file[0]
    assert batch.shape == (4, 3, 96, 128) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.std() > 0.01
    before = out.read_bytes()
    with pytest.raises(TaoUserError, match="fewer frames than one batch of 4"):  # 3 validation frames
        CLI.resolve_task("calibration_tensorfile")(
            ["-e", str(trained["spec"]), "-o", str(out), "-m", "1", "--use_validation_set"])
    assert out.read_bytes() == before  # the existing tensorfile is untouched


def test_prune_then_retrain_with_load_graph_and_qat(trained, tmp_path):
    from tao_tf.detectnet_v2.model.io import load_model

    model = trained["results"] / "weights" / "model.tlt"
    pruned = tmp_path / "pruned.tlt"
    args = ["-m", str(model), "-o", str(pruned), "-k", KEY, "-pth", "0.99", "-pg", "8", "-nf", "8"]
    assert CLI.run("prune", args) == 0
    status = [json.loads(line) for line in (tmp_path / "prune" / "status.json").open()]
    kpi = status[-2]["kpi"]
    assert kpi["parameters_after"] < kpi["parameters_before"]
    log = (tmp_path / "prune" / "prune.log").read_text()
    assert "conv1" in log and "(excluded)" in log and "Parameters:" in log
    small, meta, _ = load_model(str(pruned), KEY)
    assert small.count_params() == kpi["parameters_after"] and meta["classes"] == ["raccoon"]
    text = trained["spec"].read_text().replace(
        "objective_set", f'load_graph: true\n  pretrained_model_file: "{pruned}"\n  objective_set', 1)
    text = text.replace("num_epochs: 2", "num_epochs: 1").replace("first_validation_epoch: 2", "first_validation_epoch: 1")
    text = text.replace("checkpoint_interval: 1", "checkpoint_interval: 1\n  enable_qat: true")
    spec = tmp_path / "retrain.txt"
    spec.write_text(text)
    # TAO's flow: prune, then retrain the pruned graph with quantization-aware training
    assert CLI.run("train", ["-e", str(spec), "-r", str(tmp_path / "retrain"), "-k", KEY]) == 0
    final = tmp_path / "retrain" / "weights" / "model.tlt"
    retrained, meta, _ = load_model(str(final), KEY)
    assert meta["qat"] and any(type(layer).__name__ == "QuantizeWrapperV2" for layer in retrained.layers)
    assert "Loaded the graph and weights" in (tmp_path / "retrain" / "train" / "train.log").read_text()
    assert CLI.run("evaluate", ["-e", str(spec), "-m", str(final), "-k", KEY, "-r", str(tmp_path)]) == 0
    onnx_path = tmp_path / "qat.onnx"
    assert CLI.run("export", ["-m", str(final), "-k", KEY, "-o", str(onnx_path), "--target_opset", "13"]) == 0
    ops = [n.op_type for n in onnx.load(str(onnx_path)).graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 5
    with pytest.raises(TaoUserError, match="QAT model cannot be pruned"):
        CLI.resolve_task("prune")(["-m", str(final), "-o", str(tmp_path / "p2.tlt"), "-k", KEY])


def test_export_int8_engines_and_evaluate_tensorrt(trained, tmp_path):
    """INT8 through tao-deploy from a calibration tensorfile; -f tensorrt evaluates engines with the
    Keras evaluation's frames, clustering and AP (FP32 engine AP == Keras AP)."""
    from tao_core.specs.detectnet_v2 import SPEC
    from tao_tf.detectnet_v2.tasks.evaluate import evaluate_model_file

    model, spec = str(trained["results"] / "weights" / "model.tlt"), str(trained["spec"])
    tensorfile = tmp_path / "cal.tensorfile"
    assert CLI.run("calibration_tensorfile", ["-e", spec, "-o", str(tensorfile), "-m", "-1"]) == 0
    cache, int8 = tmp_path / "cal.bin", tmp_path / "int8.engine"
    args = ["-m", model, "-k", KEY, "-e", spec, "-o", str(tmp_path / "int8.onnx"), "--data_type", "int8",
            "--cal_data_file", str(tensorfile), "--batches", "2", "--batch_size", "4", "--cal_cache_file", str(cache),
            "--engine_file", str(int8), "--max_batch_size", "4"]
    assert CLI.run("export", args) == 0
    lines = cache.read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("-EntropyCalibration2") and len(lines) > 5
    # the tensorfile leaves no images aside: the INT8 engine is checked against FP32 on the spec's
    # 3 validation images (one by one), and the agreement with its speed ratio reaches status.json and the log
    status = [json.loads(line) for line in (tmp_path / "export" / "status.json").open()]
    kpi = [s["kpi"] for s in status if "agreement_mean_iou" in (s.get("kpi") or {})]
    assert kpi and kpi[-1]["agreement_images"] == 3.0 and 0.0 <= kpi[-1]["agreement_mean_iou"] <= 1.0
    assert kpi[-1]["agreement_speedup_vs_fp32"] > 0
    log_text = (tmp_path / "export" / "export.log").read_text()
    assert "INT8 engine vs FP32 graph on 3 held-out images" in log_text
    with pytest.raises(TaoUserError, match="already exists"):  # a named engine is never overwritten
        CLI.resolve_task("export")(["-m", model, "-k", KEY, "-o", str(tmp_path / "again.onnx"), "--engine_file",
                                    str(int8)])
    fp32 = tmp_path / "fp32.engine"  # the FP32 engine of the same ONNX, by tao-deploy's own task
    assert DEPLOY.run("gen_trt_engine", ["-m", str(tmp_path / "int8.onnx"), "-e", spec, "--engine_file", str(fp32),
                                         "--max_batch_size", "4"]) == 0
    keras = evaluate_model_file(SPEC.load("evaluate", spec), model, KEY)
    got = {}
    for name, engine in (("fp32", fp32), ("int8", int8)):
        out = tmp_path / f"eval_{name}"
        assert CLI.run("evaluate", ["-e", spec, "-m", str(engine), "-f", "tensorrt", "-r", str(out)]) == 0
        got[name] = json.loads((out / "evaluate" / "results.json").read_text())
        assert got[name]["engine"]["precision"] == name
    assert got["fp32"]["mAP"] == pytest.approx(keras["mAP"], abs=1e-3)
    assert 0.0 <= got["int8"]["mAP"] <= 1.0


def test_qat_export_has_the_learned_scales(trained, tmp_path):
    """A QAT model's export: Q/DQ pairs with the scales tfmot learned, those scales as the TensorRT
    cache (no calibration data given) and as the INT8 engine's Q/DQ; --force_ptq recalibrates."""
    from onnx import numpy_helper

    from tao_deploy.engine.calibration import read_cache
    from tao_deploy.engine.engine_file import read_engine
    from tao_tf.detectnet_v2.model.io import load_model, save_model
    from tao_tf.detectnet_v2.model.qat import quantize_model

    model, meta, _ = load_model(str(trained["results"] / "weights" / "model.tlt"), KEY)
    qat = quantize_model(model)
    images = np.random.default_rng(0).random((4, 3, 96, 128), dtype=np.float32)
    for _ in range(3):  # move the moving-average ranges off their initial values
        qat(images, training=True)
    path = tmp_path / "qat.tlt"
    save_model(qat, str(path), KEY, {**meta, "qat": True})
    cache, engine = tmp_path / "qat.bin", tmp_path / "qat.engine"
    args = ["-m", str(path), "-k", KEY, "-o", str(tmp_path / "qat.onnx"), "--data_type", "int8", "--cal_cache_file",
            str(cache), "--engine_file", str(engine), "--target_opset", "13"]
    assert CLI.run("export", args) == 0
    proto = onnx.load(str(tmp_path / "qat.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    pairs = {n.input[0]: (float(inits[n.input[1]]), int(inits[n.input[2]])) for n in proto.graph.node
             if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert len(pairs) >= 5
    learned = {v.name: float(v.numpy()) for v in qat.variables if v.name.endswith(("output_min:0", "output_max:0"))}
    amax_keras = sorted(max(-learned[k], learned[k.replace("output_min", "output_max")])
                        for k in learned if "output_min" in k)
    scales = read_cache(cache).scales
    assert set(scales) == set(pairs)
    for tensor, (s, z) in pairs.items():
        amax = s * max(z, 255 - z)
        assert scales[tensor] == pytest.approx(amax / 127, rel=1e-6)
        # the Q/DQ scale is tfmot's learned range (nudged to the uint8 grid: within one step)
        assert min(abs(amax - a) for a in amax_keras) <= 2 * s
    meta_e, payload = read_engine(engine)
    assert meta_e["precision"] == "int8" and meta_e["qat"] is True
    built = onnx.load_from_string(payload)
    binits = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    qs = {n.input[0]: float(binits[n.input[1]]) for n in built.graph.node
          if n.op_type == "QuantizeLinear" and n.input[0] in scales}
    assert qs and all(v == pytest.approx(scales[t], rel=1e-5) for t, v in qs.items())  # amax / 127
    # --force_ptq (tao deploy's flag, the same code as export's): calibrated on images instead
    ptq = tmp_path / "ptq.bin"
    args = ["-m", str(tmp_path / "qat.onnx"), "--data_type", "int8", "--force_ptq", "--cal_image_dir",
            str(trained["root"] / "images"), "--batches", "2", "--batch_size", "4", "--cal_cache_file", str(ptq),
            "--engine_file", str(tmp_path / "ptq.engine")]
    assert DEPLOY.run("gen_trt_engine", args) == 0
    assert read_cache(ptq).scales != scales
