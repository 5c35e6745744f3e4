"""tao deploy dino / deformable_detr: gen_trt_engine, evaluate, inference on a tiny DETR-shaped
ONNX (tao_deploy.detr.testing), against a reference computed here with onnxruntime + tao-core."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from tao_core.data.images import load_image_rgb
from tao_core.processing.detr import decode_topk, preprocess_image, to_coco_results
from tao_deploy import load_engine
from tao_deploy.deformable_detr.cli import CLI as DDETR_CLI
from tao_deploy.detr.testing import tiny_detr, write_detection_set
from tao_deploy.dino.cli import CLI as DINO_CLI

CLIS = {"dino": DINO_CLI, "deformable_detr": DDETR_CLI}
HW = (32, 48)
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_detection_set(tmp_path_factory.mktemp("detr_data"), num_images=5)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("detr_model") / "model.onnx"
    onnx.save_model(tiny_detr(*HW), path)
    return path


def write_spec(path, data, results, **sections):
    spec = {
        "results_dir": str(results),
        "model": {"num_queries": 10, "num_select": 10},
        "dataset": {
            "num_classes": 2,
            "batch_size": 2,
            "val_data_sources": [{"image_dir": data["image_dir"], "json_file": data["json_file"]}],
            "infer_data_sources": {"image_dir": data["image_dir"], "classmap": data["classmap"]},
            "augmentation": {"input_mean": MEAN, "input_std": STD},
        },
        "gen_trt_engine": {"input_height": HW[0], "input_width": HW[1],
                           "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 4}},
    }
    for name, value in sections.items():
        spec[name] = {**spec.get(name, {}), **value}
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def build(tmp_path, data, onnx_file, network="dino", **trt):
    engine = tmp_path / "model.engine"
    spec = write_spec(tmp_path / "gen.yaml", data, tmp_path / "results", gen_trt_engine={
        "onnx_file": str(onnx_file), "trt_engine": str(engine),
        "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 4, **trt}})
    assert CLIS[network].run("gen_trt_engine", ["-e", spec]) == 0
    return engine


def reference_detections(onnx_file, data, conf=0.0, num_select=10):
    """What evaluate must produce: onnxruntime on tao-core's preprocessing, tao-core's decode."""
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    coco = json.loads(open(data["json_file"]).read())
    out = []
    for new_id, im in enumerate(coco["images"], start=1):
        image = load_image_rgb(f"{data['image_dir']}/{im['file_name']}")
        x = preprocess_image(image, size=HW, mean=MEAN, std=STD)[None]
        logits, boxes = sess.run(["pred_logits", "pred_boxes"], {"inputs": x})
        out += to_coco_results(decode_topk(logits, boxes, [image.shape[:2]], num_select), [new_id], conf)
    return out


def test_clis_have_the_engine_tasks():
    for cli in CLIS.values():
        assert list(cli.tasks) == ["gen_trt_engine", "evaluate", "inference"]


@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
def test_gen_trt_engine(tmp_path, data, onnx_file, precision):
    trt = {"data_type": precision}
    if precision == "INT8":
        trt["calibration"] = {"cal_image_dir": [data["image_dir"]], "cal_batch_size": 2, "cal_batches": 2,
                              "cal_cache_file": str(tmp_path / "cal.bin")}
    engine = build(tmp_path, data, onnx_file, **trt)
    meta = load_engine(engine).metadata
    assert meta["precision"] == precision.lower() and meta["backend"] == "onnxruntime"
    # No labels.txt beside the ONNX: names from the dataset, indexed by class id.
    assert meta["class_names"] == ["background", "thing"] and meta["class_names_from"] == "dataset"
    assert meta["network"] == "dino" and meta["input_mean"] == MEAN and meta["input_std"] == STD
    assert meta["profile"]["inputs"] == {"min": [1, 3, *HW], "opt": [2, 3, *HW], "max": [4, 3, *HW]}
    status = [json.loads(line) for line in (tmp_path / "results" / "gen_trt_engine" / "status.json").open()]
    assert any("onnxruntime" in s.get("message", "") for s in status)
    assert status[-1]["status"] == "SUCCESS"
    if precision == "INT8":
        assert (tmp_path / "cal.bin").read_text().startswith("TRT-")


def test_int8_calibration_uses_the_network_preprocessing(tmp_path, data, onnx_file, monkeypatch):
    """Calibration batches are preprocess_image(size=H x W, mean/std of the spec), nothing else."""
    from tao_deploy.engine import precision

    seen = []
    real = precision.compute_amax

    def spy(model, reader, *args, **kwargs):
        class Tap:
            def get_next(self):
                batch = reader.get_next()
                if batch is not None:
                    seen.append(batch["inputs"])
                return batch

        return real(model, Tap(), *args, **kwargs)

    monkeypatch.setattr(precision, "compute_amax", spy)
    build(tmp_path, data, onnx_file, data_type="INT8",
          calibration={"cal_image_dir": [data["image_dir"]], "cal_batch_size": 2, "cal_batches": 2})
    paths = sorted(p for p in __import__("pathlib").Path(data["image_dir"]).iterdir())[:4]
    want = np.stack([preprocess_image(load_image_rgb(p), size=HW, mean=MEAN, std=STD) for p in paths])
    np.testing.assert_array_equal(np.concatenate(seen), want)


def test_labels_txt_beside_the_onnx_names_the_classes(tmp_path, data, onnx_file):
    model_dir = tmp_path / "exported"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(onnx_file.read_bytes())
    (model_dir / "labels.txt").write_text("background\nraccoon\n")
    engine = build(tmp_path, data, model_dir / "model.onnx", network="deformable_detr")
    meta = load_engine(engine).metadata
    assert meta["class_names"] == ["background", "raccoon"] and meta["network"] == "deformable_detr"


@pytest.mark.parametrize("network", ["dino", "deformable_detr"])
def test_evaluate_equals_onnxruntime_plus_core(tmp_path, data, onnx_file, network):
    engine = build(tmp_path, data, onnx_file, network)
    spec = write_spec(tmp_path / "eval.yaml", data, tmp_path / "results",
                      evaluate={"trt_engine": str(engine), "batch_size": 2})
    assert CLIS[network].run("evaluate", ["-e", spec]) == 0
    out = tmp_path / "results" / "evaluate"
    results = json.loads((out / "results.json").read_text())
    dets = json.loads((out / "detections.json").read_text())
    gt = json.loads((out / "ground_truth.json").read_text())
    assert len(gt["images"]) == 5 and [im["id"] for im in gt["images"]] == [1, 2, 3, 4, 5]
    ref = reference_detections(onnx_file, data)
    assert [(d["image_id"], d["category_id"]) for d in dets] == [(d["image_id"], d["category_id"]) for d in ref]
    np.testing.assert_allclose([d["bbox"] for d in dets], [d["bbox"] for d in ref], atol=1e-4)
    np.testing.assert_allclose([d["score"] for d in dets], [d["score"] for d in ref], atol=1e-6)
    assert results["num_images"] == 5 and 0 <= results["mAP"] <= 1
    assert results["trt_engine"] == str(engine) and results["precision"] == "fp32" and results["input_size"] == list(HW)
    for key in ("mAP", "mAP50", "per_class_ap", "stats", "conf_threshold", "num_select"):
        assert key in results
    status = [json.loads(line) for line in (out / "status.json").open()]
    assert any(s.get("kpi", {}).get("mAP") == results["mAP"] for s in status)


def test_evaluate_conf_threshold_drops_low_scores(tmp_path, data, onnx_file):
    engine = build(tmp_path, data, onnx_file)
    ref = reference_detections(onnx_file, data)
    conf = float(np.median([d["score"] for d in ref]))
    spec = write_spec(tmp_path / "eval.yaml", data, tmp_path / "results",
                      evaluate={"trt_engine": str(engine), "conf_threshold": conf})
    assert DINO_CLI.run("evaluate", ["-e", spec]) == 0
    dets = json.loads((tmp_path / "results" / "evaluate" / "detections.json").read_text())
    assert len(dets) == sum(d["score"] >= conf for d in ref) and min(d["score"] for d in dets) >= conf


def test_static_batch_engine_pads_the_last_batch(tmp_path, data, onnx_file):
    static = tmp_path / "static.onnx"
    onnx.save_model(tiny_detr(*HW, batch=2), static)  # same weights as onnx_file, batch fixed at 2
    engine = build(tmp_path, data, static)
    assert load_engine(engine).metadata["profile"]["inputs"]["max"][0] == 2
    spec = write_spec(tmp_path / "eval.yaml", data, tmp_path / "results",
                      evaluate={"trt_engine": str(engine), "batch_size": 4})
    assert DINO_CLI.run("evaluate", ["-e", spec]) == 0  # 5 images: batches of 2, 2, 1 (+1 padding)
    dets = json.loads((tmp_path / "results" / "evaluate" / "detections.json").read_text())
    ref = reference_detections(onnx_file, data)
    np.testing.assert_allclose([d["score"] for d in dets], [d["score"] for d in ref], atol=1e-6)


def test_inference_writes_kitti_labels_and_images(tmp_path, data, onnx_file):
    engine = build(tmp_path, data, onnx_file)
    conf = 0.3
    spec = write_spec(tmp_path / "infer.yaml", data, tmp_path / "results",
                      inference={"trt_engine": str(engine), "conf_threshold": conf, "color_map": {"thing": "red"}})
    assert DINO_CLI.run("inference", ["-e", spec]) == 0
    out = tmp_path / "results" / "inference"
    ref = reference_detections(onnx_file, data)
    coco = json.loads(open(data["json_file"]).read())
    for new_id, im in enumerate(coco["images"], start=1):
        stem = im["file_name"].rsplit(".", 1)[0]
        lines = (out / "labels" / f"{stem}.txt").read_text().splitlines()
        # Class id 0 is not in the classmap (line i = id i + 1): dropped, as in TAO.
        want = sorted(d["score"] for d in ref if d["image_id"] == new_id and d["category_id"] == 1 and d["score"] >= conf)
        got = sorted(float(line.split()[15]) for line in lines)
        assert all(line.split()[0] == "thing" for line in lines)
        np.testing.assert_allclose(got, want, atol=1e-3)
        ext = ".png" if im["file_name"].endswith(".png") else ".jpg"
        assert (out / "images_annotated" / f"{stem}{ext}").is_file()


def test_inference_is_internal_writes_per_folder(tmp_path, data, onnx_file):
    engine = build(tmp_path, data, onnx_file)
    spec = write_spec(tmp_path / "infer.yaml", data, tmp_path / "results",
                      inference={"trt_engine": str(engine), "is_internal": True})
    assert DINO_CLI.run("inference", ["-e", spec]) == 0
    assert len(list((tmp_path / "results" / "inference" / "images" / "labels").iterdir())) == 5
