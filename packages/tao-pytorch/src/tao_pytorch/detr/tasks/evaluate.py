"""`evaluate`: COCO mAP of a trained DINO / Deformable DETR checkpoint.

Data: dataset.test_data_sources, or dataset.val_data_sources when no test source is given.
Images go through the evaluation transform (test_random_resize, or the exact
evaluate.input_height x input_width), the model's outputs through the top-k decode
(model.num_select), detections below evaluate.conf_threshold are dropped, and
tao_core.metrics.coco.evaluate scores them against the reader's ground truth (validated,
renumbered ids; dataset.eval_class_ids restricts both to those categories).

Writes into <results_dir>/evaluate/ (or evaluate.results_dir):
    results.json       12 COCO stats, mAP / mAP50 / ..., per-class AP, run details
    detections.json    the COCO results list that was scored
    ground_truth.json  the ground truth it was scored against
and a status.json line with kpi {mAP, mAP50}.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import torch

from tao_core.data.coco import load_coco_sources
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.metrics.coco import STAT_NAMES
from tao_core.metrics.coco import evaluate as coco_evaluate
from tao_core.processing.detr import to_coco_results
from tao_pytorch.detr.build import build_postprocess
from tao_pytorch.detr.data import CocoDetectionDataset, build_dataloader, build_transforms
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.tasks.common import (
    batch_size_of,
    device_for,
    input_size_of,
    load_task_model,
    output_dir,
    read_model_checkpoint,
    refuse_trt_engine,
)

logger = logging.getLogger(__name__)


def eval_sources(dataset_cfg):
    """(spec field, sources): test_data_sources when given, else val_data_sources."""
    test = dataset_cfg.get("test_data_sources")
    if test is not None and test.get("json_file"):
        return "dataset.test_data_sources", test
    val = dataset_cfg.get("val_data_sources")
    if val:
        return "dataset.val_data_sources", val
    raise TaoUserError("dataset.test_data_sources: give {image_dir, json_file} of the data to evaluate on")


def restrict_classes(gt: dict, detections: list[dict], class_ids) -> tuple[dict, list[dict]]:
    """Ground truth and detections limited to the categories in class_ids (eval_class_ids)."""
    keep = {int(c) for c in class_ids}
    gt = dict(gt)
    gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    return gt, [d for d in detections if d["category_id"] in keep]


@torch.no_grad()
def predict_coco(model, loader, postprocess, device, conf_threshold: float) -> list[dict]:
    """COCO result dicts of every image of `loader` (image ids are the dataset's)."""
    results = []
    for images, mask, targets in loader:
        outputs = model(with_mask_channel(images, mask).to(device))
        sizes = torch.stack([torch.as_tensor(t["orig_size"]) for t in targets]).to(device)
        decoded = postprocess(outputs, sizes)
        decoded = [{k: v.cpu().numpy() for k, v in d.items()} for d in decoded]
        ids = [int(np.asarray(t["image_id"]).reshape(-1)[0]) for t in targets]
        results += to_coco_results(decoded, ids, conf_threshold)
    return results


def run_evaluate(network: str, cfg, ctx) -> dict:
    section = cfg.evaluate
    refuse_trt_engine(section, network, "evaluate")
    checkpoint = read_model_checkpoint(section.checkpoint, ctx.key, "evaluate")  # file / key errors come first
    field, sources = eval_sources(cfg.dataset)
    input_size = input_size_of(section, "evaluate")
    out_dir = output_dir(section, ctx)

    index = load_coco_sources(sources, cfg.dataset.num_classes, check_images=True, dataset_type="default")
    dataset = CocoDetectionDataset(index, build_transforms(cfg.dataset.augmentation, "eval", input_size))
    loader = build_dataloader(cfg.dataset, "eval", batch_size=batch_size_of(section, cfg), dataset=dataset)
    logger.info("evaluating on %d images of %s", len(dataset), field)

    device = device_for(section)
    model = load_task_model(network, cfg, checkpoint, section.checkpoint, "evaluate", device)
    start = time.time()
    detections = predict_coco(model, loader, build_postprocess(cfg).to(device), device, float(section.conf_threshold))
    seconds = time.time() - start

    gt = index.to_coco_dict()
    class_ids = cfg.dataset.get("eval_class_ids")
    if class_ids:
        gt, detections = restrict_classes(gt, detections, class_ids)
    metrics = coco_evaluate(gt, detections)

    results = {
        "network": network,
        "checkpoint": str(section.checkpoint),
        "data": field,
        "conf_threshold": float(section.conf_threshold),
        "num_select": int(cfg.model.num_select),
        "seconds": round(seconds, 3),
        **metrics,
    }
    atomic_write_text(os.path.join(out_dir, "ground_truth.json"), json.dumps(gt))
    atomic_write_text(os.path.join(out_dir, "detections.json"), json.dumps(detections))
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2))

    for name in STAT_NAMES:
        logger.info("%-10s %.4f", name, metrics[name])
    for name, ap in metrics["per_class_ap"].items():
        logger.info("AP %-20s %.4f (AP50 %.4f)", name, ap, metrics["per_class_ap50"][name])
    ctx.status.write(
        "RUNNING",
        f"Evaluated {metrics['num_images']} images: mAP {metrics['mAP']:.4f}, mAP50 {metrics['mAP50']:.4f}",
        kpi={"mAP": metrics["mAP"], "mAP50": metrics["mAP50"]},
    )
    return results
