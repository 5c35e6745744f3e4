"""Semantic (mIoU ...) and panoptic (PQ) metrics of tao_core on hand-made masks and on the COCO
panoptic sample against numbers of panopticapi's pq_compute.

panopticapi-lite 0.2.0 (the registry's copy of cocodataset/panopticapi, whose pq_compute it holds
unchanged) pins numpy < 2 and pulls matplotlib / scikit-image, so it cannot be a test dependency
here; its pq_compute was run outside the repository on the predictions `_perturbed` builds (seeds
0-3) and its All / Things / Stuff figures are pinned in PANOPTICAPI. Where panopticapi is
importable the test also compares live, per class included.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tao_core.data.coco_panoptic import id2rgb, load_panoptic_json, read_panoptic_png, rgb2id, write_panoptic_png
from tao_core.errors import TaoUserError
from tao_core.metrics.panoptic import PanopticEvaluator, pq_compute_files
from tao_core.metrics.segmentation import SemanticEvaluator, confusion_matrix, semantic_metrics
from tao_core.testing import find_dataset

_FOUND = find_dataset("coco_panoptic_sample", Path(__file__).resolve().parents[3],
                      marker="annotations/panoptic_val2017_sample.json")
SAMPLE = str(_FOUND) if _FOUND else "/nonexistent"
GT_JSON = os.path.join(SAMPLE, "annotations", "panoptic_val2017_sample.json")
GT_DIR = os.path.join(SAMPLE, "panoptic_val2017")
needs_sample = pytest.mark.skipif(not os.path.isfile(GT_JSON), reason="shared/data/coco_panoptic_sample not present")

# panopticapi pq_compute on _perturbed(seed): {group: (pq, sq, rq, n)}
PANOPTICAPI = {
    0: {"All": (0.32760797448, 0.410705329486, 0.349693678641, 18),
        "Things": (0.224309229677, 0.293813841629, 0.246762740184, 12),
        "Stuff": (0.534205464087, 0.644488305201, 0.555555555556, 6)},
    1: {"All": (0.378100170819, 0.453289820365, 0.392226394104, 17),
        "Things": (0.263507160672, 0.349406316032, 0.272834730282, 11),
        "Stuff": (0.588187356089, 0.643742911644, 0.611111111111, 6)},
    2: {"All": (0.290351798038, 0.338424561173, 0.329764056923, 18),
        "Things": (0.206427298834, 0.267604786374, 0.226908635795, 10),
        "Stuff": (0.395257422043, 0.426949279673, 0.458333333333, 8)},
    3: {"All": (0.247811094028, 0.287067706497, 0.259450800915, 20),
        "Things": (0.133667621214, 0.192568129489, 0.138901601831, 10),
        "Stuff": (0.361954566841, 0.381567283505, 0.38, 10)},
}


# ----------------------------------------------------------------------------- semantic


def test_semantic_metrics_hand_computed():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [3, 2, 0]])
    conf = confusion_matrix(pred, gt, 4, ignore_value=255)
    assert conf.sum() == 5  # the ignored pixel is not counted
    m = semantic_metrics(conf, ["a", "b", "c", "d"])
    # IoU a = 1/(2+1-1), b = 1/(2+2-1), c = 1/1; d has no GT pixel: no IoU, left out of the mean
    assert m["per_class_iou"] == pytest.approx({"a": 0.5, "b": 1 / 3, "c": 1.0, "d": None})
    assert m["mIoU"] == pytest.approx((0.5 + 1 / 3 + 1) / 3)
    assert m["mACC"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["pACC"] == pytest.approx(3 / 5)
    assert m["fwIoU"] == pytest.approx(0.5 * 2 / 5 + 1 / 3 * 2 / 5 + 1 * 1 / 5)


def test_semantic_evaluator_accumulates_and_rejects_bad_values():
    ev = SemanticEvaluator(3, ignore_value=255)
    ev.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    ev.update(np.ones((2, 2), int), np.array([[1, 1], [2, 255]]))
    out = ev.compute()
    assert out["num_images"] == 2 and out["num_pixels"] == 7
    assert out["per_class_iou"] == pytest.approx({"0": 1.0, "1": 2 / 3, "2": 0.0})
    with pytest.raises(TaoUserError, match=r"ground truth holds class values \[7\] outside 0..2"):
        ev.update(np.zeros((1, 1), int), np.array([[7]]))
    with pytest.raises(TaoUserError, match="prediction has shape"):
        ev.update(np.zeros((1, 2), int), np.zeros((2, 1), int))


# ----------------------------------------------------------------------------- panoptic, hand-made


def _two_halves():
    gt = np.zeros((4, 4), np.int64)
    gt[:, :2], gt[:, 2:] = 1, 2
    gt_segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}]
    return gt, gt_segs


CATS = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]


def test_pq_hand_computed_matches():
    gt, gt_segs = _two_halves()
    pred = np.where(gt == 1, 10, 11)
    pred[0, :2] = 11  # two person pixels taken by sky: person IoU 6/8, sky IoU 8/10
    ev = PanopticEvaluator(CATS)
    ev.update(gt, gt_segs, pred, [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 2}])
    r = ev.compute()
    assert r["per_class"][1] == pytest.approx({"pq": 0.75, "sq": 0.75, "rq": 1.0})
    assert r["per_class"][2] == pytest.approx({"pq": 0.8, "sq": 0.8, "rq": 1.0})
    assert r["All"] == pytest.approx({"pq": 0.775, "sq": 0.775, "rq": 1.0, "n": 2})
    assert r["Things"]["pq"] == pytest.approx(0.75) and r["Stuff"]["pq"] == pytest.approx(0.8)


def test_pq_iou_at_one_half_is_no_match():
    gt, gt_segs = _two_halves()
    pred = gt.copy() * 0 + 11
    pred[:, :1] = 10  # person predicted on 4 of its 8 pixels: IoU exactly 0.5 -> FP + FN
    ev = PanopticEvaluator(CATS)
    ev.update(gt, gt_segs, pred, [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 2}])
    st = ev.compute()["per_class_stats"]
    assert (st[1]["tp"], st[1]["fp"], st[1]["fn"]) == (0, 1, 1)
    # sky: 8 / 12 > 0.5 -> TP
    assert st[2]["tp"] == 1 and st[2]["iou"] == pytest.approx(8 / 12)


def test_pq_void_and_crowd_regions():
    gt = np.zeros((4, 6), np.int64)  # column block 0-1 VOID
    gt[:, 2:4] = 5                   # crowd of persons
    gt[:, 4:] = 6                    # one person
    gt_segs = [{"id": 5, "category_id": 1, "iscrowd": 1}, {"id": 6, "category_id": 1, "iscrowd": 0}]
    pred = np.zeros_like(gt)
    pred[:, 0:3] = 20                # person: 8 px on VOID + 4 on the crowd -> ignored, not an FP
    pred[:, 4:] = 21                 # matches the person exactly
    pred[:, 3] = 22                  # sky on the crowd only: not its category's crowd -> FP
    ev = PanopticEvaluator(CATS)
    ev.update(gt, gt_segs, pred, [{"id": 20, "category_id": 1}, {"id": 21, "category_id": 1},
                                  {"id": 22, "category_id": 2}])
    st = ev.compute()["per_class_stats"]
    assert (st[1]["tp"], st[1]["fp"], st[1]["fn"]) == (1, 0, 0)  # the crowd itself is no FN
    assert (st[2]["tp"], st[2]["fp"], st[2]["fn"]) == (0, 1, 0)


def test_pq_union_leaves_out_void():
    gt = np.zeros((2, 4), np.int64)
    gt[:, :2] = 1
    pred = np.full_like(gt, 10)      # 4 px on the person, 4 on VOID: IoU = 4 / (8 + 4 - 4 - 4) = 1
    ev = PanopticEvaluator(CATS)
    ev.update(gt, [{"id": 1, "category_id": 1, "iscrowd": 0}], pred, [{"id": 10, "category_id": 1}])
    assert ev.compute()["per_class"][1]["sq"] == pytest.approx(1.0)


def test_pq_prediction_errors_are_clear():
    gt, gt_segs = _two_halves()
    ev = PanopticEvaluator(CATS)
    with pytest.raises(TaoUserError, match="segment id 11 is in the map but not in segments_info"):
        ev.update(gt, gt_segs, np.where(gt == 1, 10, 11), [{"id": 10, "category_id": 1}])
    with pytest.raises(TaoUserError, match=r"segments \[12\] are in segments_info but have no pixel"):
        ev.update(gt, gt_segs, np.where(gt == 1, 10, 10), [{"id": 10, "category_id": 1}, {"id": 12, "category_id": 2}])
    with pytest.raises(TaoUserError, match="category_id 9, which is not a ground-truth category"):
        ev.update(gt, gt_segs, np.full_like(gt, 10), [{"id": 10, "category_id": 9}])


# ----------------------------------------------------------------------------- rgb <-> id


def test_rgb_id_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256**3, size=(7, 9))
    ids[0, 0], ids[0, 1] = 0, 256**3 - 1
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    # the defining formula on one pixel: R + 256 G + 256^2 B
    assert rgb2id(np.array([[[1, 2, 3]]], np.uint8))[0, 0] == 1 + 256 * 2 + 65536 * 3
    write_panoptic_png(tmp_path / "p.png", ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "p.png"), ids)


@needs_sample
def test_sample_png_ids_equal_segments_info():
    records, cats = load_panoptic_json(GT_JSON, os.path.join(SAMPLE, "val2017"), GT_DIR)
    assert len(records) == 2 and len(cats) == 133
    for r in records:
        ids = read_panoptic_png(r["pan_path"])
        present, counts = np.unique(ids[ids != 0], return_counts=True)
        assert set(present.tolist()) == set(r["segment_ids"].tolist())
        assert dict(zip(present.tolist(), counts.tolist(), strict=True)) == dict(
            zip(r["segment_ids"].tolist(), r["area"].tolist(), strict=True))


# ----------------------------------------------------------------------------- vs panopticapi


def _perturbed(seed, out_dir):
    """A deterministic imperfect prediction of the sample: segments dropped, shifted, relabelled,
    plus random false-positive boxes (what the pinned panopticapi figures were computed on)."""
    with open(GT_JSON) as f:
        gt = json.load(f)
    rng = np.random.default_rng(seed)
    folder = os.path.join(out_dir, f"pred{seed}")
    os.makedirs(folder)
    cats = [c["id"] for c in gt["categories"]]
    anns = []
    for ann in gt["annotations"]:
        ids = read_panoptic_png(os.path.join(GT_DIR, ann["file_name"]))
        new = ids.copy()
        h, w = ids.shape
        segs = []
        for s in ann["segments_info"]:
            m = ids == s["id"]
            r = rng.random()
            if r < 0.15:
                new[m] = 0
                continue
            if r < 0.3:
                dy, dx = rng.integers(-15, 16, 2)
                new[m] = 0
                new[np.roll(np.roll(m, dy, 0), dx, 1)] = s["id"]
            cat = s["category_id"] if rng.random() > 0.15 else int(rng.choice(cats))
            segs.append({"id": s["id"], "category_id": cat})
        for k in range(3):
            y, x = rng.integers(0, h - 40), rng.integers(0, w - 40)
            sid = 9000000 + seed * 10 + k
            new[y:y + int(rng.integers(5, 40)), x:x + int(rng.integers(5, 40))] = sid
            segs.append({"id": sid, "category_id": int(rng.choice(cats))})
        present = set(np.unique(new).tolist())
        write_panoptic_png(os.path.join(folder, ann["file_name"]), new)
        anns.append({"image_id": ann["image_id"], "file_name": ann["file_name"],
                     "segments_info": [s for s in segs if s["id"] in present]})
    pred_json = folder + ".json"
    with open(pred_json, "w") as f:
        json.dump({"annotations": anns, "categories": gt["categories"], "images": gt["images"]}, f)
    return pred_json, folder


@needs_sample
@pytest.mark.parametrize("seed", [0, 3])
def test_pq_equals_panopticapi_pq_compute(seed, tmp_path):
    pred_json, pred_dir = _perturbed(seed, tmp_path)
    ours = pq_compute_files(GT_JSON, pred_json, GT_DIR, pred_dir)
    for group, (pq, sq, rq, n) in PANOPTICAPI[seed].items():
        assert ours[group]["n"] == n
        assert (ours[group]["pq"], ours[group]["sq"], ours[group]["rq"]) == pytest.approx((pq, sq, rq), abs=1e-11)
    try:
        from panopticapi.evaluation import pq_compute
    except ImportError:
        return
    ref = pq_compute(GT_JSON, pred_json, GT_DIR, pred_dir)
    for cid, v in ref["per_class"].items():
        assert ours["per_class"][cid] == pytest.approx(v, abs=1e-12)


@needs_sample
def test_pq_of_the_ground_truth_is_one():
    r = pq_compute_files(GT_JSON, GT_JSON, GT_DIR, GT_DIR)
    assert r["All"] == pytest.approx({"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 8})
