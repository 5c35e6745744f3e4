"""PyTorch (tao-pytorch) vs engine (tao-deploy) on the same tiny DINO / Deformable DETR.

Both packages evaluate at the exact export size (evaluate.input_height/width = the ONNX's H x W),
so PyTorch's evaluation transform and the engine's preprocessing give the same input, which
the first test checks bit for bit before comparing raw outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from e2e_helpers import INPUT_HW, NUM_VAL, TINY_MODEL, max_rel_diff, pseudo_ground_truth

from tao_core.data.images import load_image_rgb
from tao_core.specs import get_spec
from tao_deploy import load_engine
from tao_deploy.detr.detector import EngineDetector
from tao_deploy.engine.calibration import read_cache
from tao_pytorch.common.checkpoint import load_model_weights
from tao_pytorch.detr.data import build_dataloader
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.network import detr_network

NETWORKS = ["dino", "deformable_detr"]
FIGURES: dict = {}  # printed at the end of the session (pytest -s) for the report


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    yield
    if FIGURES:
        print("\nparity figures:", json.dumps(FIGURES, indent=1, sort_keys=True))


@pytest.mark.parametrize("network", NETWORKS)
def test_fp32_engine_outputs_equal_pytorch(network, pipelines):
    p = pipelines(network)
    cfg = get_spec(network).load("evaluate", str(p.spec("raw")), [f"evaluate.checkpoint={p.checkpoint}"])
    loader = build_dataloader(cfg.dataset, "eval", batch_size=NUM_VAL, input_size=INPUT_HW)
    images, mask, targets = next(iter(loader))
    assert images.shape == (NUM_VAL, 3, *INPUT_HW) and not mask.any()

    model = detr_network(network).build_model(cfg)
    load_model_weights(model, str(p.checkpoint))
    with torch.no_grad():
        ref = model.eval()(with_mask_channel(images, mask))

    engine = load_engine(p.fp32_engine)
    detector = EngineDetector(engine, cfg.dataset.augmentation.input_mean, cfg.dataset.augmentation.input_std,
                              cfg.model.num_select, batch_size=4)
    # The engine's preprocessing of the raw files is PyTorch's evaluation input, bit for bit.
    paths = [loader.dataset.records[i]["path"] for i in range(NUM_VAL)]
    batch = detector.preprocess([load_image_rgb(path) for path in paths])
    np.testing.assert_array_equal(batch, images.numpy())

    # One batch of 4 and one of 2 (the engine's profile is 1..4).
    first, second = detector.run_raw(batch[:4]), detector.run_raw(batch[4:])
    logits, boxes = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    rel = {"pred_logits": max_rel_diff(logits, ref["pred_logits"].numpy()),
           "pred_boxes": max_rel_diff(boxes, ref["pred_boxes"].numpy())}
    FIGURES.setdefault(network, {})["fp32_max_rel_diff"] = rel
    assert max(rel.values()) < 1e-4, rel
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), rtol=1e-4, atol=1e-5)
    detector.close()


@pytest.mark.parametrize("network", NETWORKS)
def test_fp32_engine_map_equals_pytorch_evaluate(network, pipelines):
    p = pipelines(network)
    pt = p.evaluate_pytorch("pt_eval")
    fp32 = p.evaluate_engine("fp32_eval", p.fp32_engine)
    # Same layout as the PyTorch task.
    for name in ("results.json", "detections.json", "ground_truth.json"):
        assert (p.root / "fp32_eval" / "evaluate" / name).is_file()
    assert json.loads((p.root / "pt_eval" / "evaluate" / "ground_truth.json").read_text()) == json.loads(
        (p.root / "fp32_eval" / "evaluate" / "ground_truth.json").read_text())

    # Detection for detection: same images, classes, boxes and scores.
    ref, got = p.detections("pt_eval"), p.detections("fp32_eval")
    assert len(ref) == len(got) == NUM_VAL * TINY_MODEL["num_select"]
    key = lambda d: (d["image_id"], d["category_id"], round(d["bbox"][0], 1), round(d["bbox"][1], 1))  # noqa: E731
    ref_s, got_s = sorted(ref, key=key), sorted(got, key=key)
    np.testing.assert_allclose([d["score"] for d in got_s], [d["score"] for d in ref_s], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([d["bbox"] for d in got_s], [d["bbox"] for d in ref_s], rtol=0, atol=1e-2)

    # Real raccoon boxes (a random model scores ~0) and the model's own top boxes (scores high).
    pseudo = pseudo_gt_file(p)
    pt_pseudo = p.evaluate_pytorch("pt_eval_pseudo", pseudo)
    fp32_pseudo = p.evaluate_engine("fp32_eval_pseudo", p.fp32_engine, pseudo)
    FIGURES.setdefault(network, {}).update({
        "mAP_raccoon": {"pytorch": pt["mAP"], "fp32_engine": fp32["mAP"]},
        "mAP_pseudo_gt": {"pytorch": pt_pseudo["mAP"], "fp32_engine": fp32_pseudo["mAP"]},
    })
    assert abs(pt["mAP"] - fp32["mAP"]) <= 1e-3
    assert pt_pseudo["mAP"] > 0.5
    assert abs(pt_pseudo["mAP"] - fp32_pseudo["mAP"]) <= 1e-3
    assert fp32["precision"] == "fp32" and fp32["trt_engine"] == str(p.fp32_engine)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_int8_engine_from_raccoon_calibration(method, pipelines):
    p = pipelines("dino")
    cache = p.root / f"cal_{method}.bin"
    engine = p.build(f"int8_{method}", "INT8", calibration={
        "cal_image_dir": [p.data["cal_dir"]], "cal_batch_size": 2, "cal_batches": 4, "cal_cache_file": str(cache),
        "method": method})
    assert cache.read_text().startswith("TRT-")
    assert read_cache(cache).scales  # every written scale is finite, so the cache can be reused
    meta = load_engine(engine).metadata
    assert meta["precision"] == "int8" and meta["class_names"] == ["background", "raccoon"]
    assert meta["network"] == "dino" and meta["input_mean"] == [0.485, 0.456, 0.406]
    int8 = p.evaluate_engine(f"int8_{method}_eval", engine)
    int8_pseudo = p.evaluate_engine(f"int8_{method}_eval_pseudo", engine, pseudo_gt_file(p))
    FIGURES.setdefault("dino", {})[f"int8_{method}_mAP"] = {"raccoon": int8["mAP"], "pseudo_gt": int8_pseudo["mAP"]}
    assert 0 <= int8["mAP"] <= 1 and 0 <= int8_pseudo["mAP"] <= 1


def pseudo_gt_file(p) -> str:
    """The pseudo ground truth of a pipeline (the PyTorch model's top boxes), made once."""
    out = p.root / "pseudo_gt.json"
    if not out.is_file():
        path = p.root / "pt_eval" / "evaluate" / "detections.json"
        if not path.is_file():
            p.evaluate_pytorch("pt_eval")
        pseudo_ground_truth(json.loads(path.read_text()), p.data["json_file"], out)
    return str(out)


def test_fp16_engine_builds_and_runs_inference(pipelines):
    p = pipelines("dino")
    engine = p.build("fp16", "FP16")
    assert load_engine(engine).precision == "fp16"
    spec = p.spec("fp16_infer", inference={"trt_engine": str(engine)})
    assert p.clis[1].run("inference", ["-e", str(spec)]) == 0
    out = p.root / "fp16_infer" / "inference"
    labels = sorted((out / "labels").glob("*.txt"))
    assert len(labels) == 3 and len(list((out / "images_annotated").iterdir())) == 3
    # FP16 scores stay close to FP32 PyTorch: same top detection, score within 1e-2.
    spec_pt = p.spec("pt_infer", inference={"checkpoint": str(p.checkpoint)})
    assert p.clis[0].run("inference", ["-e", str(spec_pt)]) == 0
    for lab in labels:
        got = [line.split() for line in lab.read_text().splitlines()]
        ref = [line.split() for line in (p.root / "pt_infer" / "inference" / "labels" / lab.name).read_text().splitlines()]
        assert len(got) == len(ref)
        np.testing.assert_allclose(float(got[0][15]), float(ref[0][15]), atol=1e-2)


def test_fp32_inference_labels_equal_pytorch(pipelines):
    p = pipelines("deformable_detr")
    spec = p.spec("fp32_infer", inference={"trt_engine": str(p.fp32_engine)})
    assert p.clis[1].run("inference", ["-e", str(spec)]) == 0
    spec_pt = p.spec("pt_infer", inference={"checkpoint": str(p.checkpoint)})
    assert p.clis[0].run("inference", ["-e", str(spec_pt)]) == 0
    got_dir, ref_dir = p.root / "fp32_infer" / "inference", p.root / "pt_infer" / "inference"
    assert sorted(x.name for x in (got_dir / "labels").iterdir()) == sorted(x.name for x in (ref_dir / "labels").iterdir())
    assert sorted(x.name for x in (got_dir / "images_annotated").iterdir()) == sorted(
        x.name for x in (ref_dir / "images_annotated").iterdir())
    for lab in (ref_dir / "labels").iterdir():
        ref = sorted(line.split() for line in lab.read_text().splitlines())
        got = sorted(line.split() for line in (got_dir / "labels" / lab.name).read_text().splitlines())
        assert [r[0] for r in ref] == [g[0] for g in got]
        np.testing.assert_allclose(np.float64([g[4:8] + g[15:] for g in got]),
                                   np.float64([r[4:8] + r[15:] for r in ref]), atol=2e-2)
