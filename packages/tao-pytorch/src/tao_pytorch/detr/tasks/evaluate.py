"""`evaluate`: COCO mAP of a trained DETR-family checkpoint.

Data: dataset.test_data_sources, or dataset.val_data_sources when no test source is given.
Images go through the evaluation transform (test_random_resize, or the exact
evaluate.input_height x input_width), the model's outputs through the top-k decode
(model.num_select; tao-core's numpy decode, the engines' own), detections below evaluate.conf_threshold are dropped, and
tao_core.metrics.coco.evaluate scores them against the reader's ground truth (validated,
renumbered ids; dataset.eval_class_ids restricts both to those categories).

tao_core.metrics.coco_report.write_coco_evaluation (the deploy engine task's writer too) writes
into <results_dir>/evaluate/ (or evaluate.results_dir):
    results.json       12 COCO stats, mAP / mAP50 / ..., per-class AP, run details
    detections.json    the COCO results list that was scored
    ground_truth.json  the ground truth it was scored against
and a status.json line with kpi {mAP, mAP50}.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from tao_core.data.coco import load_coco_sources
from tao_core.io.output_set import replace_outputs
from tao_core.metrics.coco_report import write_coco_evaluation
from tao_core.processing.detr import to_coco_results
from tao_core.tasks.detr import batch_size_of, eval_sources, input_size_of, output_dir
from tao_core.tasks.evaluation import require_ground_truth
from tao_pytorch.detr.data import CocoDetectionDataset, build_dataloader, build_transforms
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.data.transforms import describe_eval_input
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.detr.tasks.common import device_for, load_task_model, read_model_checkpoint, refuse_trt_engine

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_coco(model, loader, postprocess, device, conf_threshold: float) -> list[dict]:
    """COCO result dicts of every image of `loader` (image ids are the dataset's)."""
    results = []
    for images, mask, targets in loader:
        outputs = model(with_mask_channel(images, mask).to(device))
        sizes = torch.stack([torch.as_tensor(t["orig_size"]) for t in targets])
        decoded = postprocess(outputs, sizes)
        ids = [int(np.asarray(t["image_id"]).reshape(-1)[0]) for t in targets]
        results += to_coco_results(decoded, ids, conf_threshold)
    return results


def run_evaluate(network: DetrNetwork, cfg, ctx) -> dict:
    section = cfg.evaluate
    refuse_trt_engine(section, network, "evaluate")
    checkpoint = read_model_checkpoint(section.checkpoint, ctx.key, "evaluate")  # file / key errors come first
    field, sources = eval_sources(cfg.dataset)
    input_size = input_size_of(section, "evaluate")
    out_dir = output_dir(section, ctx)

    index = load_coco_sources(sources, cfg.dataset.num_classes, check_images=True, dataset_type="default")
    require_ground_truth(index, field, cfg.dataset.get("eval_class_ids"))  # 0 images / 0 boxes: an error now
    dataset = CocoDetectionDataset(index, build_transforms(cfg.dataset.augmentation, "eval", input_size))
    loader = build_dataloader(cfg.dataset, "eval", batch_size=batch_size_of(section, cfg), dataset=dataset)
    input_desc = describe_eval_input(cfg.dataset.augmentation, input_size)
    logger.info("evaluating on %d images of %s, %s", len(dataset), field, input_desc)

    device = device_for(section)
    model = load_task_model(network, cfg, checkpoint, section.checkpoint, "evaluate", device)
    start = time.time()
    detections = predict_coco(model, loader, network.build_postprocess(cfg), device, float(section.conf_threshold))
    seconds = time.time() - start

    run_info = {
        "network": network.name,
        "checkpoint": str(section.checkpoint),
        "data": field,
        "conf_threshold": float(section.conf_threshold),
        "num_select": int(cfg.model.num_select),
        "seconds": round(seconds, 3),
        "input": input_desc,
    }
    with replace_outputs(out_dir) as staging:  # the three files replace a previous run's together
        return write_coco_evaluation(staging, index.to_coco_dict(), detections, run_info, ctx.status,
                                     cfg.dataset.get("eval_class_ids"))
