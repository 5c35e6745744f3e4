"""DetectNet_v2 (KITTI-style) evaluation: per-class IoU thresholds, box filters, VOC AP. Numpy only.

Mirrors TAO's `evaluation_config` (seed 002; shared/research/anchors-tao.md §4.6):

- `minimum_detection_ground_truth_overlap` -> `iou_thresholds` (per class; IoU >= threshold matches).
- `evaluation_box_config` -> `box_filters`: a box is kept when min <= height <= max and
  min <= width <= max (height = y2 - y1, width = x2 - x1; bounds inclusive, as in TAO's
  `_check_if_bbox_is_valid`).
- `average_precision_mode` -> `ap_mode`: "sample" (VOC2007, mean over t in linspace(0, 1, 11) of the
  max precision at recall >= t) or "integrate" (VOC2010+, area under the max-to-the-right precision
  envelope, with sentinels (0, 0) and (1, 0)), per class; mAP is the plain mean over `classes`.

Filtered boxes, precisely. Predictions outside the filter are removed before matching (as in TAO).
Ground truth outside the filter is, by default (`filtered_gt="ignore"`), a don't-care region: it is
not counted in the recall denominator, and a prediction whose best match is such a box (IoU >= the
class threshold) is neither TP nor FP, so a box just outside the filter on one side cannot turn into
a false positive. `filtered_gt="drop"` instead deletes filtered GT, which is exactly what TAO's TF1
`evaluation/compute_metrics.py::_prepare_internal_structures` does (such a prediction becomes a FP).

Matching is greedy VOC style per class: predictions in descending score order (stable sort), each
takes the same-class GT of its image with the highest IoU; below threshold -> FP, already taken ->
duplicate FP, otherwise TP. A class without (unignored) GT gets AP 0.0 and still counts in the mAP,
as in TAO. Boxes use continuous coordinates (no +1 "include border pixels" convention).

Ground truth and predictions of classes not in `classes` (e.g. KITTI DontCare) are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tao_core.errors import TaoUserError

AP_MODES = ("sample", "integrate")
FILTERED_GT_MODES = ("ignore", "drop")


@dataclass(frozen=True)
class BoxFilter:
    """`evaluation_box_config` of one class; a box is kept when every bound holds (inclusive)."""

    min_height: float = 0.0
    max_height: float = math.inf
    min_width: float = 0.0
    max_width: float = math.inf

    def keeps(self, boxes: np.ndarray) -> np.ndarray:
        """Boolean mask over [N, 4] xyxy boxes."""
        h = boxes[:, 3] - boxes[:, 1]
        w = boxes[:, 2] - boxes[:, 0]
        return (h >= self.min_height) & (h <= self.max_height) & (w >= self.min_width) & (w <= self.max_width)


def evaluate_detections(
    ground_truth: Mapping[Hashable, Sequence[tuple[Any, Sequence[float]]]],
    predictions: Mapping[Hashable, Sequence[tuple[Any, Sequence[float], float]]],
    classes: Sequence[str],
    iou_thresholds: float | Mapping[str, float] = 0.5,
    box_filters: Mapping[str, BoxFilter | Sequence[float]] | None = None,
    ap_mode: str = "integrate",
    num_recall_points: int = 11,
    filtered_gt: str = "ignore",
) -> dict[str, Any]:
    """Per-class AP and mAP of `predictions` against `ground_truth`.

    ground_truth: image id -> [(class, [x1, y1, x2, y2]), ...]; every image that was evaluated,
        including those without objects.
    predictions: image id -> [(class, [x1, y1, x2, y2], score), ...]; ids must be GT images.
    classes: the evaluated class names; mAP averages over them.
    iou_thresholds: one threshold for all classes, or class -> threshold covering every class.
    box_filters: class -> BoxFilter or (min_height, max_height, min_width, max_width) (proto order).
    ap_mode: "sample" or "integrate" (case-insensitive, so the proto enum names work).
    filtered_gt: "ignore" (default, don't-care) or "drop" (TAO TF1 parity); see the module docstring.

    Returns {"mAP": float, "per_class_ap": {class: AP}, "num_ground_truth": {class: count},
    "ap_mode": mode}.
    """
    classes = _check_classes(classes)
    mode = _check_choice(ap_mode, AP_MODES, "ap_mode")
    gt_mode = _check_choice(filtered_gt, FILTERED_GT_MODES, "filtered_gt")
    thresholds = _check_thresholds(iou_thresholds, classes)
    filters = _check_filters(box_filters or {}, classes)
    missing = [img for img in predictions if img not in ground_truth]
    if missing:
        raise TaoUserError(f"predictions for images not in the ground truth: {missing[:5]}")

    per_class_ap, num_gt = {}, {}
    for cls in classes:
        gt = _gt_of_class(ground_truth, cls, filters.get(cls), gt_mode)
        preds = _predictions_of_class(predictions, cls, filters.get(cls))
        tp, fp = _match(gt, preds, thresholds[cls])
        num_gt[cls] = int(sum(int((~ignored).sum()) for _, ignored in gt.values()))
        per_class_ap[cls] = _class_ap(tp, fp, num_gt[cls], mode, num_recall_points)
    return {
        "mAP": float(np.mean(list(per_class_ap.values()))),
        "per_class_ap": per_class_ap,
        "num_ground_truth": num_gt,
        "ap_mode": mode,
    }


def average_precision(recall: Sequence[float], precision: Sequence[float], mode: str = "integrate",
                      num_recall_points: int = 11) -> float:  # fmt: skip
    """VOC AP of a precision/recall curve given per ranked prediction (recall non-decreasing)."""
    mode = _check_choice(mode, AP_MODES, "ap_mode")
    rec = np.asarray(recall, dtype=float)
    prec = np.asarray(precision, dtype=float)
    if mode == "sample":
        points = [prec[rec >= t].max(initial=0.0) for t in np.linspace(0.0, 1.0, num_recall_points)]
        return float(np.mean(points))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: best precision at this recall or beyond
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes (0 where the union is empty)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ----------------------------------------------------------------------------------- internals
def _gt_of_class(ground_truth, cls, box_filter, gt_mode) -> dict[Hashable, tuple[np.ndarray, np.ndarray]]:
    """image -> (boxes [N, 4], ignored [N]) for one class."""
    out = {}
    for img, objects in ground_truth.items():
        boxes = _boxes([obj[1] for obj in objects if obj[0] == cls], f"ground truth of image {img!r}")
        ignored = np.zeros(len(boxes), dtype=bool)
        if box_filter is not None and len(boxes):
            kept = box_filter.keeps(boxes)
            if gt_mode == "drop":
                boxes = boxes[kept]
                ignored = ignored[kept]
            else:
                ignored = ~kept
        out[img] = (boxes, ignored)
    return out


def _predictions_of_class(predictions, cls, box_filter) -> list[tuple[Hashable, np.ndarray, np.ndarray]]:
    """[(image, boxes [N, 4], scores [N])] for one class, filtered boxes removed."""
    out = []
    for img, objects in predictions.items():
        objects = [obj for obj in objects if obj[0] == cls]
        boxes = _boxes([obj[1] for obj in objects], f"predictions of image {img!r}")
        scores = _scores([obj[2] for obj in objects], img)
        if box_filter is not None and len(boxes):
            kept = box_filter.keeps(boxes)
            boxes, scores = boxes[kept], scores[kept]
        out.append((img, boxes, scores))
    return out


def _match(gt, preds, threshold) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP flags of the class's predictions, in descending score order (ignored ones dropped)."""
    images, best_gt, best_iou, scores = [], [], [], []
    for img, boxes, img_scores in preds:
        gt_boxes = gt[img][0]
        if len(gt_boxes) and len(boxes):
            iou = box_iou(boxes, gt_boxes)
            best_gt.append(iou.argmax(axis=1))
            best_iou.append(iou.max(axis=1))
        else:
            best_gt.append(np.full(len(boxes), -1))
            best_iou.append(np.zeros(len(boxes)))
        images += [img] * len(boxes)
        scores.append(img_scores)
    if not images:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    best_gt, best_iou, scores = np.concatenate(best_gt), np.concatenate(best_iou), np.concatenate(scores)
    order = np.argsort(-scores, kind="stable")  # stable: ties keep input order, so results are reproducible
    taken = {img: np.zeros(len(boxes), dtype=bool) for img, (boxes, _) in gt.items()}
    tp, fp = np.zeros(len(order), dtype=bool), np.zeros(len(order), dtype=bool)
    for rank, i in enumerate(order):
        img, j = images[i], best_gt[i]
        if j < 0 or best_iou[i] < threshold:
            fp[rank] = True
        elif gt[img][1][j]:
            continue  # best match is a don't-care GT: neither TP nor FP
        elif taken[img][j]:
            fp[rank] = True  # duplicate detection of an object already found
        else:
            tp[rank] = taken[img][j] = True
    counted = tp | fp
    return tp[counted], fp[counted]


def _class_ap(tp, fp, num_gt, mode, num_recall_points) -> float:
    if num_gt == 0:
        return 0.0  # TAO reports 0 (its NaN is zeroed) for a class absent from the evaluation set
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    precision = ctp / np.maximum(ctp + cfp, 1)
    return average_precision(ctp / num_gt, precision, mode, num_recall_points)


def _boxes(raw, where) -> np.ndarray:
    try:
        boxes = np.asarray(raw, dtype=float).reshape(-1, 4)
    except (TypeError, ValueError) as e:
        raise TaoUserError(f"{where}: boxes must be [x1, y1, x2, y2] numbers ({e})") from e
    if len(raw) != len(boxes) or not np.isfinite(boxes).all():
        raise TaoUserError(f"{where}: boxes must be 4 finite numbers [x1, y1, x2, y2]")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise TaoUserError(f"{where}: a box has x2 < x1 or y2 < y1; boxes must be [x1, y1, x2, y2]")
    return boxes


def _scores(raw, img) -> np.ndarray:
    try:
        scores = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TaoUserError(f"predictions of image {img!r}: scores must be numbers ({e})") from e
    if not np.isfinite(scores).all():
        raise TaoUserError(f"predictions of image {img!r}: scores must be finite")
    return scores


def _check_classes(classes) -> list[str]:
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise TaoUserError(f"classes must be a non-empty list of distinct names, got {classes!r}")
    return classes


def _check_choice(value, allowed, name) -> str:
    lowered = value.lower() if isinstance(value, str) else value
    if lowered not in allowed:
        raise TaoUserError(f"{name} must be one of {allowed} (case-insensitive), got {value!r}")
    return lowered


def _check_thresholds(iou_thresholds, classes) -> dict[str, float]:
    if isinstance(iou_thresholds, Mapping):
        _check_keys(iou_thresholds, classes, "iou_thresholds (minimum_detection_ground_truth_overlap)")
        missing = [c for c in classes if c not in iou_thresholds]
        if missing:
            raise TaoUserError(f"minimum_detection_ground_truth_overlap has no threshold for classes {missing}")
        thresholds = dict(iou_thresholds)
    else:
        thresholds = dict.fromkeys(classes, iou_thresholds)
    for cls in classes:
        value = thresholds[cls]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise TaoUserError(f"IoU threshold of class {cls!r} must be in (0, 1], got {value!r}")
    return {cls: float(thresholds[cls]) for cls in classes}


def _check_filters(box_filters, classes) -> dict[str, BoxFilter]:
    _check_keys(box_filters, classes, "box_filters (evaluation_box_config)")
    out = {}
    for cls, spec in box_filters.items():
        if not isinstance(spec, BoxFilter):
            values = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else []
            if len(values) != 4:
                raise TaoUserError(f"box filter of class {cls!r} must be (min_height, max_height, min_width, "
                                   f"max_width), got {spec!r}")  # fmt: skip
            try:
                spec = BoxFilter(*(float(v) for v in values))
            except (TypeError, ValueError) as e:
                raise TaoUserError(f"box filter of class {cls!r} must hold numbers, got {spec!r}") from e
        if not (0 <= spec.min_height <= spec.max_height and 0 <= spec.min_width <= spec.max_width):
            raise TaoUserError(f"box filter of class {cls!r} needs 0 <= minimum <= maximum, got {spec}")
        out[cls] = spec
    return out


def _check_keys(mapping, classes, what) -> None:
    unknown = [k for k in mapping if k not in classes]
    if unknown:
        raise TaoUserError(f"{what} names classes {unknown} that are not evaluated; classes are {classes}")
