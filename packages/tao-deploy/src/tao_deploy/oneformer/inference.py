"""`inference`: run a OneFormer engine (inference.trt_engine) on a folder of images.

The PyTorch task's inputs and outputs (tao_core.tasks.oneformer_outputs): every image under
inference.images_dir (null: dataset.test.images), resized to the engine's H x W (fixed at
export; inference.image_size is the checkpoint task's), the task of inference.mode (null:
model.mode), and into <results_dir>/inference/ (or inference.results_dir) the colour overlays
images_annotated/, images.json and per mode semantic/ PNGs, panoptic/ PNGs + panoptic.json, or
instances.json. An unreadable image is skipped and reported; the task fails only when none could
be read; a previous run's outputs are replaced as a whole once this run's are complete.
"""

from __future__ import annotations

import logging

from tao_core.data.images import list_images
from tao_core.io.output_set import replace_outputs
from tao_core.tasks.detr import output_dir
from tao_core.tasks.inputs import SkippedInputs, readable_batches
from tao_core.tasks.oneformer_outputs import OneFormerOutputWriter, PostprocessSettings
from tao_deploy.oneformer.segmenter import EngineSegmenter, engine_classes, require_engine

logger = logging.getLogger(__name__)


def run(cfg, ctx) -> dict:
    section = cfg.inference
    engine_path = require_engine(section, "inference")
    settings = PostprocessSettings.from_spec(cfg)
    paths = list_images(str(section.images_dir or cfg.dataset.test.images),
                        "inference.images_dir" if section.images_dir else "dataset.test.images")
    out_dir = output_dir(section, ctx)
    skipped = SkippedInputs()
    with EngineSegmenter(engine_path, cfg.dataset.pixel_mean, cfg.dataset.pixel_std,
                         int(cfg.dataset.test.batch_size)) as seg:
        classes = engine_classes(cfg, seg)
        if tuple(int(v) for v in section.image_size) != seg.size_hw:
            logger.info("inference.image_size %s is the checkpoint task's: the engine takes %dx%d images",
                        list(section.image_size), *seg.size_hw)
        logger.info("running %s (%s %s engine, %dx%d) in %s mode on %d images", engine_path,
                    seg.engine.precision.upper(), seg.engine.backend, *seg.size_hw, settings.mode, len(paths))
        with replace_outputs(out_dir) as staging:
            writer = OneFormerOutputWriter(staging, settings, classes)
            for chunk in readable_batches(paths, seg.batch_size, skipped):
                logits, masks = seg.run([image for _, image in chunk], settings.mode)
                for (path, image), mask_cls, mask_pred in zip(chunk, logits, masks, strict=True):
                    writer.write(path, image, mask_cls, mask_pred, seg.size_hw, seg.size_hw)
            skipped_report = skipped.report(len(paths), ctx.status)  # all skipped: an error, the old outputs kept
            writer.close()
    message, result = writer.summary(len(paths), out_dir)
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {**result, "skipped": skipped_report}
