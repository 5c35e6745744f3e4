"""`inference`: run a DETR-family checkpoint on folders of images.

Images: every .jpg/.jpeg/.png/.bmp under dataset.infer_data_sources.image_dir (one folder or a
list, recursively, sorted). Class names: dataset.infer_data_sources.classmap (line i = category
id i + 1); detections of ids the classmap does not name are dropped, as in TAO.
Pre-processing is the evaluation transform (test_random_resize, or the exact
inference.input_height x input_width); decoding the top-k of model.num_select (tao-core's numpy
decode, the engines' own).

Writes with tao_core.visualize.outputs.write_detr_detections / InferenceWriter (the writer every
network uses, and the deploy engine task), into
<results_dir>/inference/ (or inference.results_dir):
    images_annotated/<stem>.jpg|.png   boxes with "name: score", inference.color_map / outline_width
    labels/<stem>.txt                  KITTI lines with the score as 16th field
keeping detections scoring >= inference.conf_threshold. With inference.is_internal the two
folders go under <out>/<name of the image's parent folder>/.

An image that cannot be read is skipped and reported (tao_core.tasks.inputs.SkippedInputs: count
and names in the log and status.json); the task fails only when no image could be read. The
outputs of a previous run in the same folder are replaced as a whole once this run has written
all of its own (tao_core.io.output_set.replace_outputs), never mixed with them.
"""

from __future__ import annotations

import logging

import torch

from tao_core.data.classmap import read_classmap
from tao_core.data.images import load_image_rgb
from tao_core.io.output_set import replace_outputs
from tao_core.tasks.detr import batch_size_of, input_size_of, output_dir
from tao_core.tasks.inputs import SkippedInputs
from tao_core.visualize.outputs import InferenceWriters, write_detr_detections
from tao_pytorch.detr.data import build_dataloader, build_dataset
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.detr.tasks.common import device_for, load_task_model, read_model_checkpoint, refuse_trt_engine

logger = logging.getLogger(__name__)


def run_inference(network: DetrNetwork, cfg, ctx) -> dict:
    section = cfg.inference
    refuse_trt_engine(section, network, "inference")
    checkpoint = read_model_checkpoint(section.checkpoint, ctx.key, "inference")
    class_names = read_classmap(cfg.dataset.infer_data_sources.classmap)
    input_size = input_size_of(section, "inference")
    out_dir = output_dir(section, ctx)
    # a bad color_map or threshold fails now, before any model is loaded
    InferenceWriters(out_dir, dict(section.color_map or {}), section.outline_width, float(section.conf_threshold))
    dataset = build_dataset(cfg.dataset, "infer", input_size=input_size)
    loader = build_dataloader(cfg.dataset, "infer", batch_size=batch_size_of(section, cfg), dataset=dataset)
    logger.info("running inference on %d images", len(dataset))

    device = device_for(section)
    model = load_task_model(network, cfg, checkpoint, section.checkpoint, "inference", device)
    postprocess = network.build_postprocess(cfg)
    num_kept = 0
    skipped = SkippedInputs()
    with replace_outputs(out_dir) as staging, torch.no_grad():
        writers = InferenceWriters(staging, dict(section.color_map or {}), section.outline_width,
                                   float(section.conf_threshold), per_source_folder=bool(section.get("is_internal")))
        for images, mask, targets, failed in loader:
            for failure in failed:
                skipped.add(failure.path, failure.message)
            if images is None:
                continue
            outputs = model(with_mask_channel(images, mask).to(device))
            sizes = torch.stack([torch.as_tensor(t["orig_size"]) for t in targets])
            for det, target in zip(postprocess(outputs, sizes), targets, strict=True):
                image = None  # the writer reads the original image again
                if target.get("warning"):  # a tolerated truncation: said, and read the same way
                    logger.warning("%s", target["warning"])
                    image = load_image_rgb(target["path"], allow_truncated=True)
                num_kept += write_detr_detections(writers.for_image(target["path"]), target["path"], image, det,
                                                  class_names)
        skipped_report = skipped.report(len(dataset), ctx.status)  # all skipped: an error, the old outputs kept

    done = len(dataset) - len(skipped)
    message = (f"Inference on {done} of {len(dataset)} images: {num_kept} detections with score >= "
               f"{section.conf_threshold} written to {out_dir}")
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {"num_images": done, "num_detections": num_kept, "results_dir": out_dir, "skipped": skipped_report}
