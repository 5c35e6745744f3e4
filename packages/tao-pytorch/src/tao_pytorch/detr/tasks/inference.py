"""`inference`: run a DINO / Deformable DETR checkpoint on folders of images.

Images: every .jpg/.jpeg/.png/.bmp under dataset.infer_data_sources.image_dir (one folder or a
list, recursively, sorted). Class names: dataset.infer_data_sources.classmap (line i = category
id i + 1); detections of ids the classmap does not name are dropped, as in TAO.
Pre-processing is the evaluation transform (test_random_resize, or the exact
inference.input_height x input_width); decoding the top-k of model.num_select.

Writes with tao_core.visualize.outputs.write_detr_detections / InferenceWriter (the writer every
network uses, and the deploy engine task), into
<results_dir>/inference/ (or inference.results_dir):
    images_annotated/<stem>.jpg|.png   boxes with "name: score", inference.color_map / outline_width
    labels/<stem>.txt                  KITTI lines with the score as 16th field
keeping detections scoring >= inference.conf_threshold. With inference.is_internal the two
folders go under <out>/<name of the image's parent folder>/.
"""

from __future__ import annotations

import logging

import torch

from tao_core.data.classmap import read_classmap
from tao_core.tasks.detr import batch_size_of, input_size_of, output_dir
from tao_core.visualize.outputs import InferenceWriters, write_detr_detections
from tao_pytorch.detr.build import build_postprocess
from tao_pytorch.detr.data import build_dataloader, build_dataset
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.tasks.common import device_for, load_task_model, read_model_checkpoint, refuse_trt_engine

logger = logging.getLogger(__name__)


def run_inference(network: str, cfg, ctx) -> dict:
    section = cfg.inference
    refuse_trt_engine(section, network, "inference")
    checkpoint = read_model_checkpoint(section.checkpoint, ctx.key, "inference")
    class_names = read_classmap(cfg.dataset.infer_data_sources.classmap)
    input_size = input_size_of(section, "inference")
    out_dir = output_dir(section, ctx)
    writers = InferenceWriters(out_dir, dict(section.color_map or {}), section.outline_width,
                               float(section.conf_threshold), per_source_folder=bool(section.get("is_internal")))
    dataset = build_dataset(cfg.dataset, "infer", input_size=input_size)
    loader = build_dataloader(cfg.dataset, "infer", batch_size=batch_size_of(section, cfg), dataset=dataset)
    logger.info("running inference on %d images", len(dataset))

    device = device_for(section)
    model = load_task_model(network, cfg, checkpoint, section.checkpoint, "inference", device)
    postprocess = build_postprocess(cfg).to(device)
    num_kept = 0
    with torch.no_grad():
        for images, mask, targets in loader:
            outputs = model(with_mask_channel(images, mask).to(device))
            sizes = torch.stack([torch.as_tensor(t["orig_size"]) for t in targets]).to(device)
            for det, target in zip(postprocess(outputs, sizes), targets, strict=True):
                det = {k: det[k].cpu().numpy() for k in ("scores", "labels", "boxes")}
                num_kept += write_detr_detections(writers.for_image(target["path"]), target["path"], None, det, class_names)

    message = f"Inference on {len(dataset)} images: {num_kept} detections with score >= {section.conf_threshold} written to {out_dir}"
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {"num_images": len(dataset), "num_detections": num_kept, "results_dir": out_dir}
