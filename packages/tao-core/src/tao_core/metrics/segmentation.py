"""Semantic segmentation metrics from a confusion matrix (numpy only; no torch).

The definitions are detectron2's `SemSegEvaluator` (what SHI-Labs/OneFormer and Mask2Former report),
as fractions in [0, 1] rather than percent:

- ground-truth pixels equal to `ignore_value` are not counted at all: they are not a class and
  whatever is predicted there is neither right nor wrong;
- per-class accuracy = TP / GT pixels of the class; per-class IoU = TP / (GT + predicted - TP);
- a class with no ground-truth pixel in the whole evaluation has no accuracy and no IoU (None in
  the per-class tables) and is left out of the means, even if it was predicted (its false
  positives still lower the IoU of the classes whose pixels they took);
- mIoU / mACC: plain mean over the classes that have one; fwIoU: IoU weighted by each class's
  share of the GT pixels; pixel accuracy: all TP / all GT pixels.

    ev = SemanticEvaluator(num_classes=19, ignore_value=255, class_names=names)
    for pred, gt in pairs:            # (H, W) integer maps of class indices 0..C-1
        ev.update(pred, gt)
    ev.compute()                      # {"mIoU": ..., "fwIoU": ..., "pACC": ..., "mACC": ..., ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tao_core.errors import TaoUserError


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_value: int | None = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground-truth class, columns = predicted class.

    Pixels whose GT is `ignore_value` are dropped. A GT value outside 0..num_classes-1 (other than
    ignore_value) or a prediction outside that range is a TaoUserError: it means the label map and
    the model disagree on the classes, which no metric should hide.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise TaoUserError(f"semantic prediction has shape {pred.shape} but its ground truth {gt.shape}; resize one to the other")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    if ignore_value is not None:
        keep = gt != ignore_value
        gt, pred = gt[keep], pred[keep]
    for name, values in (("ground truth", gt), ("prediction", pred)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            found = np.unique(values[bad])[:10].tolist()
            raise TaoUserError(
                f"semantic {name} holds class values {found} outside 0..{num_classes - 1}"
                + (f" (ignore_value {ignore_value})" if ignore_value is not None and name == "ground truth" else "")
                + "; check num_classes and the label map"
            )
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def semantic_metrics(conf: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU, fwIoU, pACC, mACC and the per-class IoU / accuracy tables of a confusion matrix
    (rows GT, columns prediction); see the module docstring for the definitions."""
    conf = np.asarray(conf, dtype=np.float64)
    n = conf.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    tp = np.diag(conf)
    pos_gt = conf.sum(axis=1)
    pos_pred = conf.sum(axis=0)
    union = pos_gt + pos_pred - tp
    valid = pos_gt > 0  # union > 0 follows
    acc = np.full(n, np.nan)
    iou = np.full(n, np.nan)
    acc[valid] = tp[valid] / pos_gt[valid]
    iou[valid] = tp[valid] / union[valid]
    total = pos_gt.sum()
    n_valid = int(valid.sum())
    return {
        "mIoU": float(iou[valid].sum() / n_valid) if n_valid else 0.0,
        "fwIoU": float((iou[valid] * pos_gt[valid] / total).sum()) if total else 0.0,
        "mACC": float(acc[valid].sum() / n_valid) if n_valid else 0.0,
        "pACC": float(tp.sum() / total) if total else 0.0,
        "per_class_iou": {name: (float(v) if ok else None) for name, v, ok in zip(names, iou, valid, strict=True)},
        "per_class_acc": {name: (float(v) if ok else None) for name, v, ok in zip(names, acc, valid, strict=True)},
        "num_classes_present": n_valid,
        "num_pixels": int(total),
    }


class SemanticEvaluator:
    """Accumulates one confusion matrix over many images; `compute()` gives `semantic_metrics`."""

    def __init__(self, num_classes: int, ignore_value: int | None = 255, class_names: Sequence[str] | None = None):
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_value = ignore_value
        self.class_names = list(class_names) if class_names is not None else None
        self.conf = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.num_images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.conf += confusion_matrix(pred, gt, self.num_classes, self.ignore_value)
        self.num_images += 1

    def compute(self) -> dict[str, Any]:
        out = semantic_metrics(self.conf, self.class_names)
        out["num_images"] = self.num_images
        return out
