"""`evaluate`: the segmentation metrics of a OneFormer engine (evaluate.trt_engine) on dataset.test
(dataset.val when test has no annotations), scored by tao_core.tasks.oneformer exactly as
`tao model oneformer evaluate` scores a checkpoint: the same result kinds (model.mode, then the
model.test *_on switches), the same post-processing settings and results.json / status line.

The engine runs once per kind with that kind's task tokens. Each image is resized as the
checkpoint's evaluation resizes it (dataset.augmentation.test_min_size / test_max_size, aspect
kept; scaled down further only if it does not fit) and padded with the mean colour to the
engine's H x W (fixed at export; tao_core.tasks.oneformer_outputs.evaluation_input); its mask
logits inside the padding are brought back to the original image by the evaluation. Exported at
the PyTorch batch's padded size, the engine sees the checkpoint's pixels and scores what
`tao model oneformer evaluate` scores (tests/e2e/test_oneformer_engine_parity.py). The ground
truth is read without a framework (tao_core.data.oneformer_ground_truth). An unreadable image is
an error here, as in the PyTorch evaluation: a metric over a subset would be a different number.
"""

from __future__ import annotations

import logging
import time

from tao_core.data.images import load_image_rgb
from tao_core.data.oneformer_ground_truth import load_eval_split
from tao_core.io.output_set import replace_outputs
from tao_core.tasks.detr import output_dir
from tao_core.tasks.oneformer import (
    OneFormerEvaluation,
    eval_split,
    evaluation_kinds,
    postprocess_settings,
    write_oneformer_evaluation,
)
from tao_core.tasks.oneformer_outputs import task_tokens
from tao_deploy.oneformer.segmenter import EngineSegmenter, require_engine

logger = logging.getLogger(__name__)


def run(cfg, ctx) -> dict:
    section = cfg.evaluate
    engine_path = require_engine(section, "evaluate")
    split_name = eval_split(cfg)
    split = load_eval_split(cfg, split_name)  # every file checked before the engine is loaded
    kinds = evaluation_kinds(cfg, split.fmt)
    out_dir = output_dir(section, ctx)
    instances = split.coco_instances() if "instance" in kinds and split.fmt == "instance" else None
    aug = cfg.dataset.augmentation
    with EngineSegmenter(engine_path, cfg.dataset.pixel_mean, cfg.dataset.pixel_std,
                         int(spec_batch(cfg, split_name))) as seg:
        num_classes = seg.num_classes or int(cfg.model.sem_seg_head.num_classes)
        evaluation = OneFormerEvaluation(kinds, split.table.categories(), num_classes,
                                         int(cfg.model.sem_seg_head.ignore_value), instances_gt=instances,
                                         **postprocess_settings(cfg))
        logger.info("evaluating %s (%s %s engine, %dx%d) for %s on %d images of dataset.%s (%s)", engine_path,
                    seg.engine.precision.upper(), seg.engine.backend, *seg.size_hw, "/".join(kinds), len(split),
                    split_name, split.fmt)
        start = time.time()
        for first in range(0, len(split), seg.batch_size):
            idx = range(first, min(first + seg.batch_size, len(split)))
            images = [load_image_rgb(split.records[i]["path"], allow_truncated=bool(split.records[i].get("truncated")))
                      for i in idx]
            gts = [split.ground_truth(i) for i in idx]
            batch, valid = seg.preprocess_keep_aspect(images, aug.test_min_size, aug.test_max_size)
            for kind in kinds:
                logits, masks = seg.run_raw(batch, task_tokens(kind, seg.task_len, len(batch)))
                for mask_cls, mask_pred, gt, hw in zip(logits, masks, gts, valid, strict=True):
                    evaluation.add(mask_cls, mask_pred, padded_hw=seg.size_hw, valid_hw=hw, ground_truth=gt,
                                   kinds=[kind])
        results = evaluation.compute()
        run_info = {"network": ctx.network, "trt_engine": str(engine_path), "precision": seg.engine.precision,
                    "backend": seg.engine.backend, "data": f"dataset.{split_name}", "format": split.fmt,
                    "seconds": round(time.time() - start, 3), **postprocess_settings(cfg),
                    "input": {"height": seg.size_hw[0], "width": seg.size_hw[1], "test_min_size": aug.test_min_size,
                              "test_max_size": aug.test_max_size}}
    with replace_outputs(out_dir) as staging:  # results.json replaces a previous run's as a set
        return write_oneformer_evaluation(staging, results, run_info, ctx.status)


def spec_batch(cfg, split: str) -> int:
    return int(cfg.dataset[split].batch_size)
