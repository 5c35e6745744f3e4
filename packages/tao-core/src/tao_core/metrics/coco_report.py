"""The results of a COCO evaluation run, written the same way by every evaluate task (PyTorch
checkpoint or deploy engine): scoring, the three json files, the log lines and the status kpi.

    results.json       run details + tao_core.metrics.coco.evaluate's keys (12 stats, mAP ..., per-class AP)
    detections.json    the COCO results list that was scored
    ground_truth.json  the ground truth it was scored against
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from tao_core.io.atomic import atomic_write_text
from tao_core.metrics.coco import STAT_NAMES
from tao_core.metrics.coco import evaluate as coco_evaluate

logger = logging.getLogger(__name__)


def restrict_classes(gt: dict, detections: list[dict], class_ids: Iterable[int]) -> tuple[dict, list[dict]]:
    """Ground truth and detections limited to the categories in class_ids (dataset.eval_class_ids).
    `gt` is not modified; a new dict is returned."""
    keep = {int(c) for c in class_ids}
    gt = dict(gt)
    gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    return gt, [d for d in detections if d["category_id"] in keep]


def write_coco_evaluation(
    out_dir: str | os.PathLike,
    gt: dict,
    detections: list[dict],
    run_info: Mapping[str, Any],
    status=None,
    class_ids: Iterable[int] | None = None,
) -> dict:
    """Score `detections` against `gt` (both restricted to `class_ids` when given), write
    ground_truth.json, detections.json and results.json ({**run_info, **metrics}) into out_dir,
    log the stats and per-class AP, and add a RUNNING line with kpi {mAP, mAP50} to `status`
    (a tao_core.results.status writer) when given. Returns the results dict."""
    if class_ids:
        gt, detections = restrict_classes(gt, detections, class_ids)
    metrics = coco_evaluate(gt, detections)
    results = {**run_info, **metrics}
    atomic_write_text(os.path.join(out_dir, "ground_truth.json"), json.dumps(gt))
    atomic_write_text(os.path.join(out_dir, "detections.json"), json.dumps(detections))
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2))
    for name in STAT_NAMES:
        logger.info("%-10s %.4f", name, metrics[name])
    for name, ap in metrics["per_class_ap"].items():
        logger.info("AP %-20s %.4f (AP50 %.4f)", name, ap, metrics["per_class_ap50"][name])
    if status is not None:
        status.write(
            "RUNNING",
            f"Evaluated {metrics['num_images']} images: mAP {metrics['mAP']:.4f}, mAP50 {metrics['mAP50']:.4f}",
            kpi={"mAP": metrics["mAP"], "mAP50": metrics["mAP50"]},
        )
    return results
