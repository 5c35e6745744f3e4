"""`oneformer inference`: run a OneFormer checkpoint on a folder of images.

Images: every .jpg/.jpeg/.png/.bmp under inference.images_dir (null: dataset.test.images),
recursively, sorted. Each is resized to exactly inference.image_size [H, W] (RGB 0..255, the
exported graph's input), the model is given the task of inference.mode (null: model.mode), and
its last-stage outputs go through tao_core.tasks.oneformer_outputs (the writer tao deploy's
engine inference uses too): colour overlays in images_annotated/, and per mode the semantic
class-id PNGs, the COCO panoptic PNGs + panoptic.json, or the COCO instance results
instances.json, with model.object_mask_threshold / overlap_threshold / test_topk_per_image.

An image that cannot be read is skipped and reported (count and names in the log and
status.json); the task fails only when none could be read. The outputs of a previous run in
the same folder are replaced as a whole once this run has written all of its own
(tao_core.io.output_set.replace_outputs).
"""

from __future__ import annotations

import logging

import torch

from tao_core.data.images import list_images
from tao_core.io.output_set import replace_outputs
from tao_core.tasks.detr import output_dir
from tao_core.tasks.inputs import SkippedInputs, readable_images
from tao_core.tasks.oneformer_outputs import (
    OneFormerOutputWriter,
    PostprocessSettings,
    inference_classes,
    network_input,
    padded_size,
    task_tokens,
)
from tao_pytorch.oneformer.tasks.common import load_oneformer_for_task

logger = logging.getLogger(__name__)


def run(cfg, ctx) -> dict:
    section = cfg.inference
    settings = PostprocessSettings.from_spec(cfg)
    size_hw = (int(section.image_size[0]), int(section.image_size[1]))
    paths = list_images(str(section.images_dir or cfg.dataset.test.images),
                        "inference.images_dir" if section.images_dir else "dataset.test.images")
    out_dir = output_dir(section, ctx)
    model, _ = load_oneformer_for_task(cfg, "inference", key=ctx.key)
    device = next(model.parameters()).device
    classes = inference_classes(cfg, int(cfg.model.sem_seg_head.num_classes))
    padded = padded_size(size_hw, model.size_divisibility)
    tokens = torch.from_numpy(task_tokens(settings.mode, model.task_seq_len)).to(device)
    logger.info("running %s inference on %d images at %dx%d", settings.mode, len(paths), *size_hw)
    skipped = SkippedInputs()
    with replace_outputs(out_dir) as staging, torch.no_grad():
        writer = OneFormerOutputWriter(staging, settings, classes)
        for path, image in readable_images(paths, skipped):
            x = torch.from_numpy(network_input(image, size_hw)[None]).to(device)
            out = model(x, tokens)
            writer.write(path, image, out["pred_logits"][0].cpu().numpy(),
                         out["pred_masks"][0].float().cpu().numpy(), padded, size_hw)
        skipped_report = skipped.report(len(paths), ctx.status)  # all skipped: an error, the old outputs kept
        writer.close()
    message, result = writer.summary(len(paths), out_dir)
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {**result, "skipped": skipped_report, "classes_from": classes.source}
