"""Validation of COCO ground truth and detection results before they reach the evaluator.

The C++ evaluator fails on bad input with asserts or KeyErrors far from the cause; these checks turn
the usual user mistakes into a `TaoUserError` that names the offending entry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from tao_core.errors import TaoUserError

logger = logging.getLogger(__name__)


def check_ground_truth(gt: dict, iou_type: str) -> None:
    """Raise TaoUserError unless `gt` is a COCO instances dict usable for `iou_type`."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise TaoUserError(f"ground truth has no '{key}' list; is it a COCO instances json?")
    image_ids = set()
    for img in gt["images"]:
        if not isinstance(img, Mapping) or "id" not in img:
            raise TaoUserError(f"ground-truth image entry without an 'id': {_short(img)}")
        if iou_type == "segm" and not ("height" in img and "width" in img):
            raise TaoUserError(f"ground-truth image {img['id']} needs 'height' and 'width' for segm evaluation")
        image_ids.add(img["id"])
    for ann in gt["annotations"]:
        missing = [k for k in ("image_id", "category_id", "bbox", "area") if k not in ann]
        if iou_type == "segm" and "segmentation" not in ann:
            missing.append("segmentation")
        if missing:
            raise TaoUserError(f"ground-truth annotation {ann.get('id', '?')} lacks {missing}")
        if ann["image_id"] not in image_ids:
            raise TaoUserError(
                f"ground-truth annotation {ann.get('id', '?')} refers to unknown image {ann['image_id']}"
            )


def normalise_detections(raw: list, gt: dict, iou_type: str) -> list[dict]:
    """Checked shallow copies of the result dicts (the evaluator adds keys to them in place)."""
    images = {img["id"]: img for img in gt["images"]}
    category_ids = {c["id"] for c in gt["categories"]}
    dets = [_check_one(i, d, images, iou_type) for i, d in enumerate(raw)]
    unknown = sorted({d["category_id"] for d in dets} - category_ids)
    if unknown:
        logger.warning("ignoring detections of category ids %s, which the ground truth does not define", unknown)
    if iou_type == "segm" and dets and not all("bbox" in d for d in dets):
        # pycocotools picks the result type from the first entry only and crashes on a mix; derive
        # every box from its mask instead (the mask is what segm evaluation scores anyway).
        for d in dets:
            d.pop("bbox", None)
    return dets


def _check_one(index: int, det: Any, images: dict, iou_type: str) -> dict:
    where = f"detection #{index}"
    if not isinstance(det, Mapping):
        raise TaoUserError(f"{where} must be a dict, got {type(det).__name__}")
    det = dict(det)
    for key in ("image_id", "category_id"):
        if not isinstance(det.get(key), Integral) or isinstance(det.get(key), bool):
            raise TaoUserError(f"{where}: '{key}' must be an integer, got {det.get(key)!r}")
        det[key] = int(det[key])
    if det["image_id"] not in images:
        raise TaoUserError(f"{where}: image_id {det['image_id']} is not an image of the ground truth")
    score = det.get("score")
    if not isinstance(score, Real) or isinstance(score, bool) or not math.isfinite(score):
        raise TaoUserError(f"{where}: 'score' must be a finite number, got {score!r}")
    det["score"] = float(score)
    if "bbox" in det or iou_type == "bbox":
        det["bbox"] = _check_bbox(det.get("bbox"), where)
    if iou_type == "segm":
        det["segmentation"] = _check_rle(det.get("segmentation"), images[det["image_id"]], where)
    return det


def _check_bbox(bbox: Any, where: str) -> list[float]:
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4
    ok = ok and all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if not ok or bbox[2] < 0 or bbox[3] < 0:
        raise TaoUserError(f"{where}: 'bbox' must be [x, y, w, h] with finite numbers and w, h >= 0, got {bbox!r}")
    return [float(v) for v in bbox]


def _check_rle(segm: Any, image: Mapping, where: str) -> dict:
    if not isinstance(segm, Mapping) or "counts" not in segm or "size" not in segm:
        raise TaoUserError(f"{where}: segm results need an RLE 'segmentation' dict with 'counts' and 'size'")
    size = [image["height"], image["width"]]
    if list(segm["size"]) != size:
        raise TaoUserError(f"{where}: RLE size {list(segm['size'])} differs from image {image['id']} size {size}")
    counts = segm["counts"]
    if isinstance(counts, list):
        # Uncompressed RLE: compress it, as pycocotools' loadRes only takes compressed RLE.
        from faster_coco_eval.core import mask

        counts = mask.frPyObjects(dict(segm), size[0], size[1])["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise TaoUserError(f"{where}: RLE 'counts' must be a string or a list of ints, got {type(counts).__name__}")
    return {"size": size, "counts": counts}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
