"""COCO detection / instance-segmentation mAP, numerically identical to pycocotools.

`evaluate(gt, detections, iou_type)` runs faster-coco-eval's `COCOeval_faster` (C++ evaluate and
accumulate; bit-exact with pycocotools 2.0.x and about 6x faster, see shared/research/deps.md §5).
pycocotools semantics are kept on purpose, quirks included, so numbers match TAO's own evaluators:

- every GT image is evaluated, with or without detections (a missed object lowers recall);
- `stats` is -1 where a summary is undefined (e.g. no GT object in the "small" area range);
- a detection whose category_id is not a GT category is ignored (as pycocotools does; a warning is
  logged) because models with a 91-slot COCO head legitimately emit unused ids;
- a GT annotation with id 0 is treated as unmatched by both engines (README of
  shared/data/coco_panoptic_sample); renumber such files if that is not wanted.

Result keys (`STAT_NAMES` is the pycocotools summary order, maxDets 100 unless named):
    stats          list of the 12 summary floats
    mAP mAP50 mAP75 mAP_small mAP_medium mAP_large AR1 AR10 AR100 AR_small AR_medium AR_large
    per_class_ap   {category name: AP@[.5:.95]}, -1.0 for a category without GT
    per_class_ap50 {category name: AP@.5}
    iou_type, num_images, num_detections
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from tao_core.errors import TaoUserError
from tao_core.metrics._coco_input import check_ground_truth, normalise_detections

logger = logging.getLogger(__name__)

STAT_NAMES = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip
IOU_TYPES = ("bbox", "segm")


def evaluate(
    gt_json_path: str | PathLike | Mapping[str, Any],
    detections: str | PathLike | Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """COCO-evaluate `detections` against the ground truth; see the module docstring for the keys.

    `gt_json_path` is a COCO instances json (or its already-loaded dict, which is not modified).
    `detections` is a COCO results json path or a list of result dicts with image_id, category_id,
    score and bbox [x, y, w, h] (bbox) or a compressed RLE `segmentation` (segm). An empty list is
    allowed and scores 0 wherever GT exists.
    """
    if iou_type not in IOU_TYPES:
        raise TaoUserError(f"COCO iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    gt = _load_gt(gt_json_path)
    check_ground_truth(gt, iou_type)
    dets = normalise_detections(_load_detections(detections), gt, iou_type)
    coco_eval = _run_engine(gt, dets, iou_type)
    return _summarise(coco_eval, gt, iou_type, len(dets))


def _load_gt(source: str | PathLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        # The engine writes "ignore"/"rle" keys into GT annotations; keep the caller's dict intact.
        return copy.deepcopy(dict(source))
    data = _read_json(source, "ground-truth")
    if not isinstance(data, dict):
        raise TaoUserError(f"ground-truth file {source} must hold a COCO json object, not a {type(data).__name__}")
    return data


def _load_detections(source: str | PathLike | Sequence[Mapping[str, Any]]) -> list:
    if isinstance(source, (str, PathLike)):
        data = _read_json(source, "detections")
        if not isinstance(data, list):
            raise TaoUserError(
                f"detections file {source} must hold a json list of results, not a {type(data).__name__}"
            )
        return data
    if isinstance(source, Sequence):
        return list(source)
    raise TaoUserError(f"detections must be a results-json path or a list of dicts, got {type(source).__name__}")


def _read_json(path: str | PathLike, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise TaoUserError(f"{what} file not found: {path}")
    try:
        with path.open() as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaoUserError(f"{what} file {path} is not valid json: {e}") from e


def _run_engine(gt: dict, dets: list[dict], iou_type: str):
    # Imported here so `import tao_core.metrics.coco` costs nothing until an evaluation runs.
    from faster_coco_eval import COCO, COCOeval_faster

    # The engine reports progress through a print function; send it to our debug log, and turn its
    # python warnings (e.g. "annotation id 0") into log records instead of stderr noise.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco_gt = COCO(gt, print_function=logger.debug)
        coco_dt = coco_gt.loadRes(dets)
        coco_dt.print_function = logger.debug
        coco_eval = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=logger.debug)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    for w in caught:
        logger.warning("COCO evaluation: %s", w.message)
    return coco_eval


def _summarise(coco_eval, gt: dict, iou_type: str, num_detections: int) -> dict[str, Any]:
    stats = [float(s) for s in coco_eval.stats[: len(STAT_NAMES)]]
    result: dict[str, Any] = {"stats": stats, **dict(zip(STAT_NAMES, stats, strict=True))}
    per_class, per_class50 = _per_class_ap(coco_eval, gt)
    result.update(
        per_class_ap=per_class,
        per_class_ap50=per_class50,
        iou_type=iou_type,
        num_images=len(gt["images"]),
        num_detections=num_detections,
    )
    return result


def _per_class_ap(coco_eval, gt: dict) -> tuple[dict[str, float], dict[str, float]]:
    """AP per category from the accumulated precision table, averaged the way `summarize` does."""
    # precision is [iouThr, recallThr, category, areaRng, maxDets]; -1 marks "no GT here".
    precision = np.asarray(coco_eval.eval["precision"])
    params = coco_eval.params
    iou50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    names = _category_names(gt)
    per_class, per_class50 = {}, {}
    for k, cat_id in enumerate(params.catIds):
        name = names[cat_id]
        per_class[name] = _mean_valid(precision[:, :, k, 0, -1])
        per_class50[name] = _mean_valid(precision[iou50, :, k, 0, -1])
    return per_class, per_class50


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def _category_names(gt: dict) -> dict[int, str]:
    """Category id -> name; a duplicated name gets its id appended so no class is silently merged."""
    cats = gt["categories"]
    counts: dict[str, int] = {}
    for c in cats:
        counts[str(c.get("name", c["id"]))] = counts.get(str(c.get("name", c["id"])), 0) + 1
    names = {}
    for c in cats:
        name = str(c.get("name", c["id"]))
        names[c["id"]] = name if counts[name] == 1 else f"{name}#{c['id']}"
    return names
