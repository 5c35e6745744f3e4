"""`oneformer evaluate -e spec.yaml evaluate.checkpoint=model.pth`: the segmentation metrics of a
trained checkpoint on dataset.test (dataset.val when test has no annotations).

What is scored (tao_core.tasks.oneformer.evaluation_kinds): model.mode, then every kind model.test
switches on (semantic_on, instance_on, panoptic_on); the network runs once per kind with that
kind's task token ("The task is panoptic"), since its outputs are conditioned on the task.
Images go through the evaluation resize (augmentation.test_min_size / test_max_size), outputs
through tao-core's numpy post-processing (the deploy engines' own) onto the original image.

Written into evaluate.results_dir (default <results_dir>/evaluate), replacing a previous run's set:
    results.json   run details, per kind: semantic {mIoU, fwIoU, mACC, pACC, per_class_iou ...},
                   panoptic {PQ, SQ, RQ, PQ_th ..., All / Things / Stuff, per_class},
                   instance {COCO mask AP stats, per_class_ap}; "kpi" the headline numbers
and a status.json line with that kpi; the metrics are logged as a table.
"""

from __future__ import annotations

import logging
import time

import torch

from tao_core.io.output_set import replace_outputs
from tao_core.tasks.detr import output_dir
from tao_core.tasks.oneformer import eval_split, evaluation_kinds, postprocess_settings, write_oneformer_evaluation
from tao_pytorch.oneformer.data import build_dataloader, build_dataset
from tao_pytorch.oneformer.lightning_module import new_evaluation
from tao_pytorch.oneformer.network import NETWORK, image_outputs, model_pixels, task_tokens
from tao_pytorch.oneformer.tasks.common import load_oneformer_for_task

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_model(model, cfg, dataset, loader, kinds: list[str], device: torch.device):
    """The tao_core OneFormerEvaluation of `model` on every image of `loader` (from `dataset`)."""
    evaluation = new_evaluation(cfg, dataset, kinds)
    index = {int(dataset.records[i]["image_id"]): i for i in range(len(dataset))}
    for batch in loader:
        images = model_pixels(batch["images"], cfg.dataset).to(device)
        gts = [dataset.ground_truth(index[int(m["image_id"])]) for m in batch["meta"]]
        for kind in kinds:
            outputs = model(images, task_tokens(kind, images.shape[0], cfg).to(device))
            for item, gt in zip(image_outputs(outputs, batch), gts, strict=True):
                evaluation.add(item["mask_cls"], item["mask_pred"], padded_hw=item["padded_hw"],
                               valid_hw=item["valid_hw"], ground_truth=gt, kinds=[kind])
    return evaluation


def run(cfg, ctx) -> dict:
    section = cfg.evaluate
    out_dir = output_dir(section, ctx)
    split = eval_split(cfg)
    dataset = build_dataset(cfg, split)  # every file checked, before the model is built
    kinds = evaluation_kinds(cfg, dataset.fmt)
    model, path = load_oneformer_for_task(cfg, "evaluate", key=ctx.key)
    device = next(model.parameters()).device
    loader = build_dataloader(cfg, split, dataset=dataset)
    aug = cfg.dataset.augmentation
    logger.info("evaluating %s on %d images of dataset.%s (%s), shorter side %d, longer at most %d",
                "/".join(kinds), len(dataset), split, dataset.fmt, aug.test_min_size, aug.test_max_size)
    start = time.time()
    results = evaluate_model(model, cfg, dataset, loader, kinds, device).compute()
    run_info = {"network": NETWORK.name, "checkpoint": path, "data": f"dataset.{split}", "format": dataset.fmt,
                "seconds": round(time.time() - start, 3), **postprocess_settings(cfg),
                "input": {"test_min_size": int(aug.test_min_size), "test_max_size": int(aug.test_max_size)}}
    with replace_outputs(out_dir) as staging:  # results.json replaces a previous run's as a set
        return write_oneformer_evaluation(staging, results, run_info, ctx.status)
