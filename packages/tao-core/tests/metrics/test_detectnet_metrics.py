"""tao_core.metrics.detectnet: hand-computed AP, per-class IoU thresholds, box filters, KITTI sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.metrics.detectnet import BoxFilter, average_precision, box_iou, evaluate_detections

KITTI_CLASSES = ["car", "pedestrian", "cyclist"]
# Seed 002 evaluation_config: car 0.7, others 0.5; every class min 4 px, max 9999 px.
KITTI_IOU = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
KITTI_FILTERS = {c: (4, 9999, 4, 9999) for c in KITTI_CLASSES}


def hand_example():
    """3 GT cars in 2 images; 4 predictions whose ranked outcome is TP, FP, TP, FP (one car missed).

    rank  score  outcome           cum TP  cum FP  precision  recall
      1    0.9   TP (g1, exact)       1       0      1          1/3
      2    0.8   FP (background)      1       1      1/2        1/3
      3    0.7   TP (g3, exact)       2       1      2/3        2/3
      4    0.6   FP (duplicate g1)    2       2      1/2        2/3

    SAMPLE (11 points): t = 0, .1, .2, .3 -> max precision at recall >= t is 1   (4 points)
                        t = .4, .5, .6     -> 2/3                               (3 points)
                        t = .7 ... 1.0     -> no such recall -> 0               (4 points)
                        AP = (4 * 1 + 3 * 2/3) / 11 = 6/11 = 0.5454...
    INTEGRATE: envelope is 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0 beyond (recall never reaches 1):
                        AP = 1/3 * 1 + 1/3 * 2/3 = 5/9 = 0.5555...
    """
    gt = {"a": [("car", [0, 0, 10, 10]), ("car", [20, 0, 30, 10])], "b": [("car", [0, 0, 10, 10])]}
    preds = {
        "a": [("car", [0, 0, 10, 10], 0.9), ("car", [50, 50, 60, 60], 0.8), ("car", [0, 0, 10, 10], 0.6)],
        "b": [("car", [0, 0, 10, 10], 0.7)],
    }
    return gt, preds


def test_hand_computed_sample_and_integrate():
    gt, preds = hand_example()
    sample = evaluate_detections(gt, preds, ["car"], ap_mode="sample")
    integrate = evaluate_detections(gt, preds, ["car"], ap_mode="INTEGRATE")  # proto enum spelling
    assert sample["per_class_ap"]["car"] == pytest.approx(6 / 11, abs=1e-12)
    assert integrate["per_class_ap"]["car"] == pytest.approx(5 / 9, abs=1e-12)
    assert integrate["mAP"] == integrate["per_class_ap"]["car"]
    assert sample["num_ground_truth"] == {"car": 3}


def test_known_curves_sample_vs_integrate():
    # Low recall, perfect precision: 11-point sampling credits t=0 and t=0.1 -> 2/11, while the
    # area is only 0.1 -> SAMPLE > INTEGRATE.
    assert average_precision([0.1], [1.0], "sample") == pytest.approx(2 / 11)
    assert average_precision([0.1], [1.0], "integrate") == pytest.approx(0.1)
    # Recall stops at 0.95: SAMPLE loses the whole t=1.0 point (10/11), INTEGRATE only 5 % -> INTEGRATE > SAMPLE.
    assert average_precision([0.5, 0.95], [1.0, 1.0], "sample") == pytest.approx(10 / 11)
    assert average_precision([0.5, 0.95], [1.0, 1.0], "integrate") == pytest.approx(0.95)
    # The envelope takes the best precision at this recall or any higher one, filling dips.
    assert average_precision([0.5, 0.5, 1.0], [0.5, 0.4, 1.0], "integrate") == pytest.approx(1.0)
    # Perfect curves are 1 in both modes; no predictions are 0.
    for mode in ("sample", "integrate"):
        assert average_precision([0.25, 0.5, 0.75, 1.0], [1, 1, 1, 1], mode) == pytest.approx(1.0)
        assert average_precision([], [], mode) == 0.0


def test_per_class_iou_threshold_turns_tp_into_fp():
    gt = {0: [("car", [0, 0, 10, 10]), ("person", [100, 0, 110, 10])]}
    preds = {0: [("car", [0, 0, 10, 6], 0.9), ("person", [100, 0, 110, 6], 0.9)]}  # IoU 0.6 each
    assert box_iou(np.array([[0, 0, 10, 6.0]]), np.array([[0, 0, 10, 10.0]]))[0, 0] == pytest.approx(0.6)
    result = evaluate_detections(gt, preds, ["car", "person"], iou_thresholds={"car": 0.7, "person": 0.5})
    assert result["per_class_ap"] == {"car": 0.0, "person": 1.0}
    assert result["mAP"] == 0.5
    # A threshold equal to the IoU still matches (IoU >= threshold, as TAO compares).
    assert evaluate_detections(gt, preds, ["car"], iou_thresholds={"car": 0.6})["mAP"] == 1.0


def test_box_filters_apply_to_ground_truth_and_predictions():
    filters = {"car": BoxFilter(min_height=4, min_width=4)}
    # GT side: a 3 px tall car nobody detected lowers recall, unless filtered out.
    gt = {0: [("car", [0, 0, 20, 20]), ("car", [40, 0, 60, 3])]}
    preds = {0: [("car", [0, 0, 20, 20], 0.9)]}
    assert evaluate_detections(gt, preds, ["car"])["per_class_ap"]["car"] == pytest.approx(0.5)
    filtered = evaluate_detections(gt, preds, ["car"], box_filters=filters)
    assert filtered["per_class_ap"]["car"] == 1.0 and filtered["num_ground_truth"] == {"car": 1}
    # Prediction side: a 2 px wide false positive ranked first costs precision, unless filtered out.
    gt = {0: [("car", [0, 0, 20, 20])]}
    preds = {0: [("car", [0, 0, 20, 20], 0.5), ("car", [50, 0, 52, 30], 0.9)]}
    assert evaluate_detections(gt, preds, ["car"])["mAP"] == pytest.approx(0.5)
    assert evaluate_detections(gt, preds, ["car"], box_filters={"car": (4, 9999, 4, 9999)})["mAP"] == 1.0
    # Maximum bounds filter too (inclusive): a 30 px tall box passes max_height 30, not 29.
    assert evaluate_detections(gt, preds, ["car"], box_filters={"car": (0, 30, 0, 9999)})["mAP"] == pytest.approx(0.5)
    assert evaluate_detections(gt, preds, ["car"], box_filters={"car": (0, 29, 0, 9999)})["mAP"] == 1.0


def test_filtered_ground_truth_is_dont_care_or_dropped():
    # GT 3.9 px tall is filtered (min 4) but the prediction on it is 4.1 px tall and passes.
    gt = {0: [("car", [0, 0, 20, 20]), ("car", [40, 0, 60, 3.9])]}
    preds = {0: [("car", [40, 0, 60, 4.1], 0.9), ("car", [0, 0, 20, 20], 0.5)]}
    filters = {"car": (4, 9999, 4, 9999)}
    ignore = evaluate_detections(gt, preds, ["car"], box_filters=filters)
    assert ignore["mAP"] == 1.0  # matched a don't-care box: neither TP nor FP
    # TAO TF1 parity: the filtered GT is deleted, so the prediction is a FP ranked first.
    drop = evaluate_detections(gt, preds, ["car"], box_filters=filters, filtered_gt="drop")
    assert drop["mAP"] == pytest.approx(0.5)  # precision 0 then 1/2 at recall 1


def test_class_without_ground_truth_scores_zero_and_counts_in_map():
    gt = {0: [("car", [0, 0, 10, 10])], 1: []}
    preds = {1: [("cyclist", [0, 0, 10, 10], 0.4)]}
    result = evaluate_detections(gt, {0: [("car", [0, 0, 10, 10], 0.9)], **preds}, ["car", "cyclist"])
    assert result["per_class_ap"] == {"car": 1.0, "cyclist": 0.0}
    assert result["mAP"] == 0.5 and result["num_ground_truth"]["cyclist"] == 0


# ------------------------------------------------------------------------------- KITTI sample
def read_kitti(shared_data: Path | None) -> dict:
    """image -> [(class, xyxy)] from label_2 (lower-cased; DontCare/Misc/Truck are not evaluated)."""
    if shared_data is None:
        rng = np.random.default_rng(0)
        out = {}
        for i in range(6):
            objs = []
            for _ in range(rng.integers(1, 5)):
                x, y, w, h = rng.uniform(0, 1000), rng.uniform(0, 300), rng.uniform(10, 150), rng.uniform(10, 70)
                objs.append((str(rng.choice(KITTI_CLASSES)), [x, y, x + w, y + h]))
            out[f"{i:06d}"] = objs
        return out
    out = {}
    for path in sorted((shared_data / "kitti_sample" / "training" / "label_2").glob("*.txt")):
        out[path.stem] = [
            (f[0].lower(), [float(v) for v in f[4:8]]) for f in map(str.split, path.read_text().splitlines())
        ]
    return out


def noisy_predictions(gt: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    preds = {}
    for img, objects in gt.items():
        out = []
        for cls, (x1, y1, x2, y2) in objects:
            if cls not in KITTI_CLASSES or rng.random() < 0.2:
                continue
            w, h = x2 - x1, y2 - y1
            dx1, dy1, dx2, dy2 = rng.normal(0, 0.12, 4) * [w, h, w, h]
            out.append((cls, [x1 + dx1, y1 + dy1, max(x1 + dx1 + 1, x2 + dx2), max(y1 + dy1 + 1, y2 + dy2)],
                        float(rng.uniform(0.2, 1.0))))  # fmt: skip
        for _ in range(2):
            x, y = rng.uniform(0, 1100), rng.uniform(0, 300)
            out.append((str(rng.choice(KITTI_CLASSES)), [x, y, x + 40, y + 30], float(rng.uniform(0, 0.8))))
        preds[img] = out
    return preds


@pytest.mark.parametrize("mode", ["sample", "integrate"])
def test_kitti_perfect_and_noisy(shared_data, mode):
    gt = read_kitti(shared_data)
    kwargs = dict(classes=KITTI_CLASSES, iou_thresholds=KITTI_IOU, box_filters=KITTI_FILTERS, ap_mode=mode)
    perfect = {img: [(c, b, 0.9) for c, b in objs if c in KITTI_CLASSES] for img, objs in gt.items()}
    result = evaluate_detections(gt, perfect, **kwargs)
    present = [c for c in KITTI_CLASSES if result["num_ground_truth"][c]]
    assert present and all(result["per_class_ap"][c] == 1.0 for c in present)
    if shared_data is not None:
        assert result["num_ground_truth"] == {"car": 5, "pedestrian": 2, "cyclist": 1}
        assert result["mAP"] == 1.0
    noisy = evaluate_detections(gt, noisy_predictions(gt, seed=1), **kwargs)
    assert noisy["mAP"] < result["mAP"]
    assert noisy == evaluate_detections(gt, noisy_predictions(gt, seed=1), **kwargs)  # deterministic
    assert noisy["mAP"] == pytest.approx(np.mean(list(noisy["per_class_ap"].values())))
    # Loosening the car threshold can only turn FPs into TPs for a fixed set of predictions.
    loose = evaluate_detections(gt, noisy_predictions(gt, seed=1), **{**kwargs, "iou_thresholds": 0.3})
    assert loose["per_class_ap"]["car"] >= noisy["per_class_ap"]["car"]


def reference_ap(gt, preds, cls, thr, mode):
    """Plain-loop VOC reference (no filters) to cross-check the vectorised matcher on random data."""
    ranked = sorted(((s, img, b) for img, objs in preds.items() for c, b, s in objs if c == cls), key=lambda t: -t[0])
    gts = {img: [b for c, b in objs if c == cls] for img, objs in gt.items()}
    used = {img: [False] * len(v) for img, v in gts.items()}
    npos = sum(len(v) for v in gts.values())
    flags = []
    for _, img, b in ranked:
        ious = [box_iou(np.array([b], float), np.array([g], float))[0, 0] for g in gts[img]]
        j = int(np.argmax(ious)) if ious else -1
        if j >= 0 and ious[j] >= thr and not used[img][j]:
            used[img][j] = True
            flags.append(1)
        else:
            flags.append(0)
    tp = np.cumsum(flags)
    rec = tp / npos
    prec = tp / np.arange(1, len(flags) + 1)
    if mode == "sample":
        return np.mean(
            [max([p for p, r in zip(prec, rec, strict=True) if r >= t], default=0) for t in np.linspace(0, 1, 11)]
        )
    area, prev = 0.0, 0.0
    for k in range(len(rec)):
        area += (rec[k] - prev) * max(prec[k:])
        prev = rec[k]
    return area


@pytest.mark.parametrize("mode", ["sample", "integrate"])
def test_matches_plain_reference_on_random_data(mode):
    rng = np.random.default_rng(3)
    gt, preds = {}, {}
    for img in range(40):
        objs = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 200, 2)
            objs.append((str(rng.choice(["a", "b"])), [x, y, x + rng.uniform(5, 50), y + rng.uniform(5, 50)]))
        gt[img] = objs
        preds[img] = [(c, [b[0] + rng.normal(0, 3), b[1] + rng.normal(0, 3), b[2] + rng.normal(0, 3) + 6,
                           b[3] + rng.normal(0, 3) + 6], float(rng.random())) for c, b in objs * 2]  # fmt: skip
    result = evaluate_detections(gt, preds, ["a", "b"], iou_thresholds={"a": 0.5, "b": 0.6}, ap_mode=mode)
    for cls, thr in (("a", 0.5), ("b", 0.6)):
        assert result["per_class_ap"][cls] == pytest.approx(reference_ap(gt, preds, cls, thr, mode), abs=1e-12)
    assert 0.1 < result["mAP"] < 0.95


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ap_mode": "voc"}, "ap_mode"),
        ({"iou_thresholds": 0.0}, r"\(0, 1\]"),
        ({"iou_thresholds": 1.5}, r"\(0, 1\]"),
        ({"iou_thresholds": {"car": 0.7}}, "no threshold for classes"),
        ({"iou_thresholds": {"car": 0.7, "person": 0.5, "Bus": 0.5}}, "not evaluated"),
        ({"box_filters": {"car": (10, 4, 0, 100)}}, "minimum <= maximum"),
        ({"box_filters": {"car": (1, 2, 3)}}, "min_height, max_height"),
        ({"filtered_gt": "keep"}, "filtered_gt"),
        ({"classes": []}, "non-empty"),
    ],
)
def test_bad_options_raise_user_error(kwargs, message):
    gt, preds = hand_example()
    args = {"classes": ["car", "person"], **kwargs}
    with pytest.raises(TaoUserError, match=message):
        evaluate_detections(gt, preds, **args)


def test_bad_boxes_raise_user_error():
    gt, preds = hand_example()
    with pytest.raises(TaoUserError, match="not in the ground truth"):
        evaluate_detections(gt, {"zzz": [("car", [0, 0, 1, 1], 0.5)]}, ["car"])
    with pytest.raises(TaoUserError, match="x2 < x1"):
        evaluate_detections(gt, {"a": [("car", [10, 0, 0, 10], 0.5)]}, ["car"])
    with pytest.raises(TaoUserError, match="4 finite"):
        evaluate_detections({"a": [("car", [0, 0, 1, float("nan")])]}, {}, ["car"])
    with pytest.raises(TaoUserError, match="scores must be"):
        evaluate_detections(gt, {"a": [("car", [0, 0, 1, 1], "high")]}, ["car"])
