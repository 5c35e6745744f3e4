"""Panoptic quality (PQ, SQ, RQ), identical to panopticapi's `pq_compute` (numpy only; no torch).

Per image, with segment-id maps (0 = VOID) and their segments_info:
- a GT and a predicted segment of the same category match when IoU > 0.5, where the union leaves
  out the predicted pixels that fall on VOID; crowd GT segments never match;
- an unmatched non-crowd GT segment is a false negative;
- an unmatched prediction is a false positive unless more than half of it lies on VOID plus the
  crowd region of its own category (then it is ignored);
- GT areas are the `area` of segments_info when given (as panopticapi reads them), else counted.
Per category PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2);
"All" / "Things" / "Stuff" average over the categories that have any TP, FP or FN (`n` of them).

    ev = PanopticEvaluator(categories)          # [{"id", "name", "isthing"}]
    ev.update(gt_ids, gt_segments, pred_ids, pred_segments)
    ev.compute()   # {"All": {"pq", "sq", "rq", "n"}, "Things": ..., "Stuff": ..., "per_class": {id: {...}}}

`pq_compute_files` evaluates a COCO panoptic prediction json + PNG folder against the GT ones,
the same call as panopticapi.evaluation.pq_compute.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tao_core.data.coco_panoptic import read_panoptic_png
from tao_core.errors import TaoUserError

OFFSET = 256 * 256 * 256  # a segment id fits in 24 bits (3 PNG channels)
VOID = 0


class _CategoryStats:
    __slots__ = ("iou", "tp", "fp", "fn")

    def __init__(self):
        self.iou, self.tp, self.fp, self.fn = 0.0, 0, 0, 0


def _segments_by_id(segments: Sequence[Mapping[str, Any]], where: str) -> dict[int, dict]:
    out = {}
    for s in segments:
        sid = int(s["id"])
        if sid in out:
            raise TaoUserError(f"{where}: segment id {sid} appears twice in segments_info")
        out[sid] = dict(s)
    return out


class PanopticEvaluator:
    """Accumulates PQ statistics image by image; see the module docstring."""

    def __init__(self, categories: Sequence[Mapping[str, Any]]):
        self.categories = {int(c["id"]): dict(c) for c in categories}
        self.stats: dict[int, _CategoryStats] = defaultdict(_CategoryStats)
        self.num_images = 0

    def update(self, gt_ids: np.ndarray, gt_segments: Sequence[Mapping[str, Any]], pred_ids: np.ndarray,
               pred_segments: Sequence[Mapping[str, Any]], image: str = "image") -> None:
        """Add one image: (H, W) integer segment-id maps and their segments_info lists
        (`id`, `category_id`, GT also `iscrowd` and optionally `area`). `image` names it in errors."""
        gt_ids = np.asarray(gt_ids).astype(np.uint64)
        pred_ids = np.asarray(pred_ids).astype(np.uint64)
        if gt_ids.shape != pred_ids.shape:
            raise TaoUserError(f"{image}: panoptic prediction has shape {pred_ids.shape} but its ground truth {gt_ids.shape}")
        gt_segms = _segments_by_id(gt_segments, f"{image} (ground truth)")
        pred_segms = _segments_by_id(pred_segments, f"{image} (prediction)")

        # Predicted areas come from the map; every map id needs an entry and every entry pixels.
        unlisted = set(pred_segms)
        labels, counts = np.unique(pred_ids, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            if label not in pred_segms:
                if label == VOID:
                    continue
                raise TaoUserError(f"{image}: predicted segment id {label} is in the map but not in segments_info")
            pred_segms[label]["area"] = count
            unlisted.discard(label)
            if pred_segms[label]["category_id"] not in self.categories:
                raise TaoUserError(
                    f"{image}: predicted segment {label} has category_id {pred_segms[label]['category_id']}, "
                    "which is not a ground-truth category"
                )
        if unlisted:
            raise TaoUserError(f"{image}: predicted segments {sorted(unlisted)} are in segments_info but have no pixel in the map")
        for sid, s in gt_segms.items():
            if "area" not in s:
                s["area"] = int((gt_ids == sid).sum())

        # Pixel counts of every (gt id, pred id) pair present.
        pairs, inter = np.unique(gt_ids * np.uint64(OFFSET) + pred_ids, return_counts=True)
        gt_pred = {(int(p // OFFSET), int(p % OFFSET)): int(c) for p, c in zip(pairs.tolist(), inter.tolist(), strict=True)}

        gt_matched, pred_matched = set(), set()
        for (gt_label, pred_label), intersection in gt_pred.items():
            g, p = gt_segms.get(gt_label), pred_segms.get(pred_label)
            if g is None or p is None or g.get("iscrowd", 0) == 1 or g["category_id"] != p["category_id"]:
                continue
            union = p["area"] + g["area"] - intersection - gt_pred.get((VOID, pred_label), 0)
            iou = intersection / union
            if iou > 0.5:
                st = self.stats[g["category_id"]]
                st.tp += 1
                st.iou += iou
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)

        crowd_of_category = {}
        for gt_label, g in gt_segms.items():
            if gt_label in gt_matched:
                continue
            if g.get("iscrowd", 0) == 1:
                crowd_of_category[g["category_id"]] = gt_label
                continue
            self.stats[g["category_id"]].fn += 1

        for pred_label, p in pred_segms.items():
            if pred_label in pred_matched:
                continue
            ignored = gt_pred.get((VOID, pred_label), 0)
            if p["category_id"] in crowd_of_category:
                ignored += gt_pred.get((crowd_of_category[p["category_id"]], pred_label), 0)
            if ignored / p["area"] > 0.5:
                continue
            self.stats[p["category_id"]].fp += 1
        self.num_images += 1

    def _average(self, isthing: bool | None) -> tuple[dict, dict]:
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for cid, cat in self.categories.items():
            if isthing is not None and (cat.get("isthing", 0) == 1) != isthing:
                continue
            st = self.stats.get(cid, _CategoryStats())
            if st.tp + st.fp + st.fn == 0:
                per_class[cid] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            denom = st.tp + 0.5 * st.fp + 0.5 * st.fn
            pq_c, sq_c, rq_c = st.iou / denom, (st.iou / st.tp if st.tp else 0), st.tp / denom
            per_class[cid] = {"pq": pq_c, "sq": sq_c, "rq": rq_c}
            pq += pq_c
            sq += sq_c
            rq += rq_c
        # panopticapi divides by n unconditionally (and fails when no category is present).
        avg = {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
        return avg, per_class

    def compute(self) -> dict[str, Any]:
        """{"All", "Things", "Stuff"}: {"pq", "sq", "rq", "n"}; "per_class": {category id: {"pq", "sq", "rq"}};
        "per_class_stats": {category id: {"tp", "fp", "fn", "iou"}} of the categories seen."""
        results: dict[str, Any] = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            results[name], per_class = self._average(isthing)
            if isthing is None:
                results["per_class"] = per_class
        results["per_class_stats"] = {
            cid: {"tp": s.tp, "fp": s.fp, "fn": s.fn, "iou": s.iou} for cid, s in sorted(self.stats.items())
        }
        results["num_images"] = self.num_images
        return results


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TaoUserError(f"{path}: panoptic json not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaoUserError(f"{path}: not a valid json file ({e})") from None


def pq_compute_files(gt_json_file: str, pred_json_file: str, gt_folder: str | None = None,
                     pred_folder: str | None = None) -> dict[str, Any]:
    """PQ of a COCO panoptic prediction (json + PNG folder) against the GT ones, as panopticapi's
    pq_compute (folders default to the json path without `.json`). Every GT image needs a prediction."""
    gt_json, pred_json = _read_json(gt_json_file), _read_json(pred_json_file)
    gt_folder = gt_folder or gt_json_file.replace(".json", "")
    pred_folder = pred_folder or pred_json_file.replace(".json", "")
    for folder in (gt_folder, pred_folder):
        if not os.path.isdir(folder):
            raise TaoUserError(f"{folder}: panoptic PNG folder not found")
    ev = PanopticEvaluator(gt_json["categories"])
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    missing = [a["image_id"] for a in gt_json["annotations"] if a["image_id"] not in preds]
    if missing:
        raise TaoUserError(f"{pred_json_file}: no prediction for the ground-truth images {missing[:10]} ({len(missing)} in all)")
    for gt_ann in gt_json["annotations"]:
        pred_ann = preds[gt_ann["image_id"]]
        ev.update(
            read_panoptic_png(os.path.join(gt_folder, gt_ann["file_name"])), gt_ann["segments_info"],
            read_panoptic_png(os.path.join(pred_folder, pred_ann["file_name"])), pred_ann["segments_info"],
            image=f"image {gt_ann['image_id']}",
        )
    return ev.compute()
