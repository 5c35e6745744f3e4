"""`detectnet_v2 inference -e INFER_SPEC -i INPUT -o OUTPUT -k KEY`: boxes on images.

inferencer_config.tlt_config.model is run on every image of INPUT (a file or a folder),
resized to image_width x image_height; the raw outputs are clustered per class with
bbox_handler_config.classwise_bbox_handler_config (the "default" entry covers unlisted
classes; clustering_config + confidence_model) through tao_core.processing.detectnet, boxes
are scaled back to the original image, renamed through output_map, and written as
`OUTPUT/images_annotated/<name>` (unless disable_overlay; bbox_color per class,
overlay_linewidth) and `OUTPUT/labels/<stem>.txt` (KITTI with score, when kitti_dump).
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.data.images import IMAGE_EXTENSIONS, list_images, load_image_rgb
from tao_core.data.kitti import KittiObject, write_kitti_labels
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes
from tao_core.processing.detectnet import ClusteringParams, postprocess_detectnet, scale_boxes
from tao_core.results import setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC
from tao_core.visualize.draw import draw_detections

log = logging.getLogger("tao_tf.detectnet_v2.inference")


def main(argv: list[str]) -> int:
    args = parse_args("inference", argv)
    results_dir = args.results_dir or args.inference_output
    setup_task_logging(results_dir, "inference")
    with task_run(results_dir, "inference", network="detectnet_v2"):
        spec = SPEC.load("inference", args.inference_spec)
        run_inference(spec, args.inference_input, args.inference_output, args.enc_key)
    return 0


def input_images(path: str) -> list[str]:
    if os.path.isfile(path):
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            raise TaoUserError(f"-i/--inference_input: {path} is not a {'/'.join(IMAGE_EXTENSIONS)} image")
        return [path]
    return list_images(path, "-i/--inference_input")


def handler_settings(spec, classes: list[str]):
    """(clustering params, output names, colours) per class from bbox_handler_config."""
    bh = spec.bbox_handler_config
    per = bh.classwise_bbox_handler_config
    params, names, colors = {}, {}, {}
    for c in classes:
        cfg = per[c] if c in per else per["default"] if "default" in per else None
        if cfg is None:
            raise TaoUserError(f"bbox_handler_config.classwise_bbox_handler_config: no entry for class {c!r} "
                               "and no 'default' entry")  # fmt: skip
        params[c] = ClusteringParams.from_proto(cfg.clustering_config, cfg.confidence_model)
        names[c] = cfg.output_map or c
        if cfg.HasField("bbox_color"):
            colors[names[c]] = (cfg.bbox_color.R, cfg.bbox_color.G, cfg.bbox_color.B)
    return params, names, colors


def run_inference(spec, input_path: str, output_dir: str, key: str | None, predict=None, classes=None) -> int:
    """Run and write outputs; `predict` (NCHW float images -> (cov, bbox)) defaults to the tlt_config model.

    Returns the number of images processed.
    """
    ic = spec.inferencer_config
    h, w, c = ic.image_height or 384, ic.image_width or 1248, ic.image_channels or 3
    if predict is None:
        if ic.WhichOneof("model_config_type") != "tlt_config":
            raise TaoUserError("inferencer_config: tao-tf runs tlt_config models; engines (tensorrt_config) run "
                               "with `tao deploy detectnet_v2 inference`")  # fmt: skip
        from tao_tf.detectnet_v2.evaluation import keras_predictor
        from tao_tf.detectnet_v2.model.io import load_model

        model, meta, _ = load_model(ic.tlt_config.model, key)
        if tuple(model.input_shape[1:]) != (c, h, w):
            raise TaoUserError(f"{ic.tlt_config.model}: the model takes input {tuple(model.input_shape[1:])} "
                               f"(C, H, W); inferencer_config asks for {(c, h, w)}")  # fmt: skip
        classes = list(ic.target_classes) or meta.get("classes")
        predict = keras_predictor(model)
    if not classes:
        raise TaoUserError("inferencer_config.target_classes: the model's classes, in training order, are needed")
    images = input_images(input_path)
    params, out_names, colors = handler_settings(spec, classes)
    bh = spec.bbox_handler_config
    batch_size = max(1, ic.batch_size or 1)
    for start in range(0, len(images), batch_size):
        paths = images[start : start + batch_size]
        originals = [load_image_rgb(p) for p in paths]
        batch = np.stack([_network_input(img, w, h, c) for img in originals])
        cov, bbox = predict(batch)
        frames = postprocess_detectnet(np.asarray(cov), np.asarray(bbox), classes, (h, w), params)
        for path, img, dets in zip(paths, originals, frames, strict=True):
            boxes = np.array([scale_boxes(d.bbox, (h, w), img.shape[:2]) for d in dets]).reshape(-1, 4)
            labels = [out_names[d.class_name] for d in dets]
            scores = [float(d.confidence) for d in dets]
            _write(path, img, boxes, labels, scores, output_dir, bh, colors)
    log.info("Inference done on %d images; outputs in %s", len(images), output_dir)
    return len(images)


def _network_input(image: np.ndarray, w: int, h: int, c: int) -> np.ndarray:
    resized = Image.fromarray(image).resize((w, h), Image.BILINEAR)
    if c == 1:
        resized = resized.convert("L")
    arr = np.asarray(resized, np.float32).reshape(h, w, c) / 255.0
    return arr.transpose(2, 0, 1)


def _write(path, image, boxes, labels, scores, output_dir, bh, colors) -> None:
    stem = os.path.splitext(os.path.basename(path))[0]
    if not bh.disable_overlay:
        drawn = draw_detections(image, boxes, labels, scores, color_map=colors,
                                outline_width=bh.overlay_linewidth or 1)  # fmt: skip
        fmt, ext = ("PNG", ".png") if path.lower().endswith(".png") else ("JPEG", ".jpg")
        buf = io.BytesIO()
        drawn.save(buf, format=fmt)
        atomic_write_bytes(os.path.join(output_dir, "images_annotated", stem + ext), buf.getvalue())
    if bh.kitti_dump:
        objects = [KittiObject(type=n, bbox=tuple(float(v) for v in b), score=s)
                   for b, n, s in zip(boxes, labels, scores, strict=True)]  # fmt: skip
        write_kitti_labels(os.path.join(output_dir, "labels", stem + ".txt"), objects)
