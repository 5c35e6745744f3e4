"""tao_core.metrics.coco.evaluate against pycocotools (the reference TAO uses), on real GT files.

Detections are generated deterministically from the GT (jittered true boxes, wrong-class boxes,
duplicates, random false positives, whole images left without detections, seeded random scores),
so every AP/AR code path is exercised. When shared/data is absent a synthetic GT json is used.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.metrics.coco import STAT_NAMES, evaluate

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

TOL = 1e-9


# ---------------------------------------------------------------- reference and data generation
def reference(gt_path: Path, dets: list[dict], iou_type: str):
    """pycocotools stats and per-category AP / AP50 (same averaging as its summarize)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    prec = coco_eval.eval["precision"]
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    per_class, per_class50 = {}, {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        for out, p in ((per_class, prec[:, :, k, 0, -1]), (per_class50, prec[0, :, k, 0, -1])):
            out[names[cat_id]] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return np.asarray(coco_eval.stats, dtype=float), per_class, per_class50


def make_bbox_detections(gt: dict, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    sizes = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    skipped = {img["id"] for img in gt["images"] if rng.random() < 0.15}  # images left without any detection
    dets = []
    for ann in gt["annotations"]:
        if ann["image_id"] in skipped or rng.random() < 0.15:  # missed object
            continue
        cat = ann["category_id"]
        if len(cat_ids) > 1 and rng.random() < 0.1:  # confused class
            cat = int(rng.choice([c for c in cat_ids if c != cat]))
        dets.append(_det(ann["image_id"], cat, _jitter(ann["bbox"], rng, 0.06), rng.uniform(0.3, 1.0)))
        if rng.random() < 0.1:  # duplicate of the same object, lower score
            dets.append(_det(ann["image_id"], cat, _jitter(ann["bbox"], rng, 0.3), rng.uniform(0.0, 0.5)))
    for img in gt["images"]:
        if img["id"] in skipped:
            continue
        w, h = sizes[img["id"]]
        for _ in range(rng.integers(0, 3)):  # background false positives
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
            dets.append(_det(img["id"], int(rng.choice(cat_ids)), box, rng.uniform(0.0, 0.7)))
    rng.shuffle(dets)
    return dets


def _jitter(bbox, rng, amount):
    x, y, w, h = bbox
    dx, dy, dw, dh = rng.normal(0.0, amount, 4)
    return [x + dx * w, y + dy * h, max(1.0, w * (1 + dw)), max(1.0, h * (1 + dh))]


def _det(image_id, cat, bbox, score):
    return {"image_id": int(image_id), "category_id": int(cat), "bbox": [float(v) for v in bbox], "score": float(score)}


def make_segm_detections(gt: dict, seed: int, with_bbox: bool) -> list[dict]:
    """Polygon-derived RLE detections: an octagon inside each jittered GT box, some exact GT masks."""
    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    dets = []
    for ann in gt["annotations"]:
        if rng.random() < 0.1:
            continue
        img = images[ann["image_id"]]
        h, w = img["height"], img["width"]
        if rng.random() < 0.3 and isinstance(ann["segmentation"], dict):
            rle = dict(ann["segmentation"])
        else:
            rle = _polygon_rle(_jitter(ann["bbox"], rng, 0.1), h, w)
        dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                     "score": float(rng.uniform(0.1, 1.0))})  # fmt: skip
    cat_ids = [c["id"] for c in gt["categories"]]
    for img in gt["images"]:
        for _ in range(3):
            box = [rng.uniform(0, img["width"] / 2), rng.uniform(0, img["height"] / 2), 60.0, 40.0]
            rle = _polygon_rle(box, img["height"], img["width"])
            dets.append({"image_id": img["id"], "category_id": int(rng.choice(cat_ids)), "segmentation": rle,
                         "score": float(rng.uniform(0.0, 0.5))})  # fmt: skip
    if with_bbox:
        for d in dets:
            d["bbox"] = [float(v) for v in mask_utils.toBbox(d["segmentation"])]
    return dets


def _polygon_rle(bbox, h, w) -> dict:
    x, y, bw, bh = bbox
    cx, cy = x + bw / 2, y + bh / 2
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    poly = np.stack([cx + bw / 2 * np.cos(angles), cy + bh / 2 * np.sin(angles)], axis=1).ravel().tolist()
    rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def synthetic_gt(path: Path, seed: int = 0) -> Path:
    """A COCO instances json with boxes of all sizes, polygons and a few crowd objects."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, 31):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240})
        for _ in range(rng.integers(1, 6)):
            bw, bh = rng.uniform(8, 200), rng.uniform(8, 160)
            x, y = rng.uniform(0, 320 - bw), rng.uniform(0, 240 - bh)
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "segmentation": [poly],
                         "iscrowd": int(rng.random() < 0.03)})  # fmt: skip
    cats = [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


# ---------------------------------------------------------------------------------- fixtures
def _bbox_gt_files(shared_data, tmp_path_factory) -> list[Path]:
    if shared_data is None:
        return [synthetic_gt(tmp_path_factory.mktemp("gt") / "synthetic.json")]
    files = sorted((shared_data / "raccoon" / "annotations").glob("*.json"))
    files += sorted((shared_data / "bccd" / "annotations").glob("*.json"))
    assert files, "shared data present but raccoon/bccd annotations missing"
    return files


@pytest.fixture(scope="module")
def bbox_gt_files(shared_data, tmp_path_factory):
    return _bbox_gt_files(shared_data, tmp_path_factory)


@pytest.fixture(scope="module")
def segm_gt(shared_data, tmp_path_factory) -> Path:
    if shared_data is None:
        return synthetic_gt(tmp_path_factory.mktemp("segm") / "synthetic.json", seed=1)
    return shared_data / "coco_panoptic_sample" / "annotations" / "instances_from_panoptic_val2017_sample.json"


def assert_identical(ours: dict, gt_path: Path, dets: list[dict], iou_type: str) -> float:
    stats, per_class, per_class50 = reference(gt_path, dets, iou_type)
    diff = float(np.max(np.abs(np.asarray(ours["stats"]) - stats)))
    assert diff <= TOL, (ours["stats"], stats.tolist())
    assert [ours[n] for n in STAT_NAMES] == ours["stats"]
    assert ours["per_class_ap"] == pytest.approx(per_class, abs=TOL)
    assert ours["per_class_ap50"] == pytest.approx(per_class50, abs=TOL)
    return diff


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_identical_to_pycocotools(bbox_gt_files, seed):
    for gt_path in bbox_gt_files:
        gt = json.loads(gt_path.read_text())
        dets = make_bbox_detections(gt, seed)
        assert len({d["image_id"] for d in dets}) < len(gt["images"]), "some images must lack detections"
        ours = evaluate(gt_path, dets, "bbox")
        assert_identical(ours, gt_path, dets, "bbox")
        assert 0.05 < ours["mAP"] < 0.95, f"{gt_path.name}: generator should give a non-trivial mAP"


@pytest.mark.parametrize("with_bbox", [False, True])
def test_segm_identical_to_pycocotools(segm_gt, tmp_path, with_bbox):
    gt = json.loads(segm_gt.read_text())
    dets = make_segm_detections(gt, seed=3, with_bbox=with_bbox)
    assert_identical(evaluate(segm_gt, dets, "segm"), segm_gt, dets, "segm")
    # The real sample has an annotation with id 0, which both engines treat as "unmatched";
    # with the ids renumbered from 1 the results must agree just the same.
    for i, ann in enumerate(gt["annotations"]):
        ann["id"] = i + 1
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(gt))
    assert_identical(evaluate(shifted, dets, "segm"), shifted, dets, "segm")


def test_images_without_detections_count(bbox_gt_files):
    gt_path = bbox_gt_files[0]
    gt = json.loads(gt_path.read_text())
    perfect = [_det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in gt["annotations"]]
    assert evaluate(gt_path, perfect)["mAP"] == pytest.approx(1.0)
    half = {img["id"] for img in gt["images"][::2]}
    partial = [d for d in perfect if d["image_id"] in half]
    ours = evaluate(gt_path, partial)
    assert_identical(ours, gt_path, partial, "bbox")
    assert ours["AR100"] < 0.75  # the undetected objects lower recall instead of being skipped


def test_empty_detections(bbox_gt_files, segm_gt):
    for gt_path, iou_type in ((bbox_gt_files[0], "bbox"), (segm_gt, "segm")):
        result = evaluate(gt_path, [], iou_type)
        assert len(result["stats"]) == 12
        assert all(s in (0.0, -1.0) for s in result["stats"])  # 0 where GT exists, -1 where none
        assert result["mAP"] == 0.0 and result["num_detections"] == 0


def test_list_and_json_path_agree(bbox_gt_files, tmp_path):
    gt_path = bbox_gt_files[-1]
    dets = make_bbox_detections(json.loads(gt_path.read_text()), seed=7)
    before = copy.deepcopy(dets)
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(dets))
    from_list = evaluate(gt_path, dets)
    assert dets == before, "evaluate must not modify the caller's detections"
    assert evaluate(str(gt_path), res_path) == from_list
    assert evaluate(json.loads(gt_path.read_text()), dets) == from_list  # GT as a loaded dict


def test_unknown_category_is_ignored_like_pycocotools(bbox_gt_files):
    gt_path = bbox_gt_files[0]
    dets = make_bbox_detections(json.loads(gt_path.read_text()), seed=4)
    dets.append(_det(dets[0]["image_id"], 999, [1, 1, 5, 5], 0.99))
    assert_identical(evaluate(gt_path, dets), gt_path, dets, "bbox")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(image_id=-12345), "not an image of the ground truth"),
        (lambda d: d.update(bbox=[1, 2, 3]), "'bbox' must be"),
        (lambda d: d.update(bbox=[0, 0, -4, 5]), "'bbox' must be"),
        (lambda d: d.pop("score"), "'score'"),
        (lambda d: d.update(score=float("nan")), "'score'"),
        (lambda d: d.update(category_id="1"), "'category_id'"),
    ],
)
def test_bad_detection_raises_user_error(bbox_gt_files, mutate, message):
    gt_path = bbox_gt_files[0]
    dets = make_bbox_detections(json.loads(gt_path.read_text()), seed=5)
    mutate(dets[3])
    with pytest.raises(TaoUserError, match=message):
        evaluate(gt_path, dets)


def test_bad_inputs_raise_user_error(bbox_gt_files, segm_gt, tmp_path):
    gt_path = bbox_gt_files[0]
    with pytest.raises(TaoUserError, match="not found"):
        evaluate(tmp_path / "missing.json", [])
    with pytest.raises(TaoUserError, match="not found"):
        evaluate(gt_path, tmp_path / "missing_results.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(TaoUserError, match="not valid json"):
        evaluate(tmp_path / "broken.json", [])
    with pytest.raises(TaoUserError, match="iou_type"):
        evaluate(gt_path, [], iou_type="keypoints")
    with pytest.raises(TaoUserError, match="must be a dict"):
        evaluate(gt_path, [[1, 2, 3]])
    gt = json.loads(segm_gt.read_text())
    img = gt["images"][0]
    no_mask = [{"image_id": img["id"], "category_id": 1, "score": 0.5, "bbox": [0, 0, 4, 4]}]
    with pytest.raises(TaoUserError, match="RLE"):
        evaluate(segm_gt, no_mask, "segm")
    wrong_size = [dict(no_mask[0], segmentation={"size": [1, 1], "counts": "01"})]
    with pytest.raises(TaoUserError, match="size"):
        evaluate(segm_gt, wrong_size, "segm")


def test_evaluate_is_quiet(bbox_gt_files, capsys):
    gt_path = bbox_gt_files[0]
    evaluate(gt_path, make_bbox_detections(json.loads(gt_path.read_text()), seed=6))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_timing_is_reasonable(bbox_gt_files):
    gt_path = bbox_gt_files[0]
    dets = make_bbox_detections(json.loads(gt_path.read_text()), seed=8)
    start = time.perf_counter()
    evaluate(gt_path, dets)
    assert time.perf_counter() - start < 5.0
