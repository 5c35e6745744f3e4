"""What a DetectNet_v2 experiment spec says about scoring a model, read the same way by the
Keras evaluate (tao-tf) and the engine evaluate (tao-deploy), with no framework imported.

    names = class_names(experiment)                  # output-channel order
    params = clustering_params(experiment)           # postprocessing_config, per class
    result = evaluate_detections(gt, preds, names, **metric_options(experiment))
    print(report(result))

`preprocess_image` is the network input of one RGB image for the runtimes that read image
files (inference, engine evaluate, calibration images): resized to the network's W x H with
Pillow bilinear, scaled to [0, 1], channels first. `run_inference` is the inference task of
an inference spec (bbox_handler_config) around any runtime's `predict(NCHW) -> (cov, bbox)`.
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np

from tao_core.errors import TaoUserError
from tao_core.metrics.detectnet import BoxFilter
from tao_core.processing.detectnet import (
    DEFAULT_OFFSET,
    DEFAULT_SCALE,
    ClusteringParams,
    postprocess_detectnet,
    scale_boxes,
)

log = logging.getLogger("tao_core.tasks.detectnet_v2")


def class_names(experiment) -> list[str]:
    """The model's classes in output-channel order (cost_function_config.target_classes)."""
    return [t.name for t in experiment.cost_function_config.target_classes]


def input_shape(experiment) -> tuple[int, int, int]:
    """(C, H, W) of the network input (augmentation_config.preprocessing)."""
    p = experiment.augmentation_config.preprocessing
    return (p.output_image_channel or 3, p.output_image_height, p.output_image_width)


def bbox_scale_offset(experiment) -> tuple[float, float]:
    bbox = experiment.model_config.objective_set.bbox
    return bbox.scale or DEFAULT_SCALE, bbox.offset or DEFAULT_OFFSET


def clustering_params(experiment) -> dict[str, ClusteringParams]:
    """postprocessing_config.target_class_config per class (documented defaults when absent)."""
    cfg = experiment.postprocessing_config.target_class_config
    out = {}
    for name in class_names(experiment):
        out[name] = ClusteringParams.from_proto(cfg[name].clustering_config) if name in cfg else ClusteringParams()
    return out


def metric_options(experiment) -> dict:
    """Keyword arguments of tao_core.metrics.detectnet.evaluate_detections from evaluation_config."""
    ev = experiment.evaluation_config
    names = class_names(experiment)
    overlap = dict(ev.minimum_detection_ground_truth_overlap)
    thresholds = {n: overlap.get(n, 0.5) or 0.5 for n in names}
    filters = {}
    for n in names:
        if n in ev.evaluation_box_config:
            b = ev.evaluation_box_config[n]
            filters[n] = BoxFilter(b.minimum_height, b.maximum_height or np.inf, b.minimum_width,
                                   b.maximum_width or np.inf)  # fmt: skip
    mode = type(ev).APMode.Name(ev.average_precision_mode).lower()
    return {"iou_thresholds": thresholds, "box_filters": filters, "ap_mode": mode}


def report(result: dict, validation_cost: float | None = None) -> str:
    """The evaluation summary as TAO prints it."""
    lines = []
    if validation_cost is not None:
        lines.append(f"Validation cost: {validation_cost:.6f}")
    lines.append(f"Mean average_precision (in %): {100 * result['mAP']:.4f}")
    lines.append("")
    width = max(10, *(len(c) for c in result["per_class_ap"]))
    lines.append(f"{'class name':<{width}}      average precision (in %)")
    lines.append(f"{'-' * width}  --------------------------")
    for name, ap in result["per_class_ap"].items():
        lines.append(f"{name:<{width}}  {100 * ap:>26.4f}")
    return "\n".join(lines)


def kpi(result: dict) -> dict[str, float]:
    """status.json kpi: mean average precision and one AP per class (in %)."""
    out = {"mean average precision": 100 * result["mAP"]}
    out.update({f"{name}": 100 * ap for name, ap in result["per_class_ap"].items()})
    return out


def preprocess_image(image: np.ndarray, size_hw: tuple[int, int], channels: int = 3) -> np.ndarray:
    """(C, H, W) float32 network input of an RGB uint8 image: Pillow bilinear to W x H, / 255."""
    from PIL import Image

    h, w = int(size_hw[0]), int(size_hw[1])
    resized = Image.fromarray(image).resize((w, h), Image.BILINEAR)
    if channels == 1:
        resized = resized.convert("L")
    arr = np.asarray(resized, np.float32).reshape(h, w, channels) / 255.0
    return arr.transpose(2, 0, 1)


# ---- inference (inference spec: inferencer_config + bbox_handler_config) ------------------------


def input_images(path: str) -> list[str]:
    """The image `path` or every image of the folder `path` (-i/--inference_input)."""
    from tao_core.data.images import IMAGE_EXTENSIONS, list_images

    if os.path.isfile(path):
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            raise TaoUserError(f"-i/--inference_input: {path} is not a {'/'.join(IMAGE_EXTENSIONS)} image")
        return [path]
    return list_images(path, "-i/--inference_input")


def handler_settings(spec, classes: list[str]):
    """(clustering params, output names, colours) per class from bbox_handler_config."""
    per = spec.bbox_handler_config.classwise_bbox_handler_config
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


def inference_input_shape(spec) -> tuple[int, int, int]:
    """(C, H, W) of inferencer_config (documented defaults 3, 384, 1248)."""
    ic = spec.inferencer_config
    return ic.image_channels or 3, ic.image_height or 384, ic.image_width or 1248


def run_inference(spec, input_path: str, output_dir: str, predict, classes: list[str]) -> int:
    """Run `predict` (NCHW float images -> (cov, bbox)) on every image of `input_path` and write
    `images_annotated/` (unless disable_overlay) and `labels/` (kitti_dump) into `output_dir`.

    Boxes are clustered per class with classwise_bbox_handler_config (the "default" entry covers
    unlisted classes), scaled back to the original image and renamed through output_map.
    Returns the number of images processed.
    """
    from tao_core.data.images import load_image_rgb

    if not classes:
        raise TaoUserError("inferencer_config.target_classes: the model's classes, in training order, are needed")
    c, h, w = inference_input_shape(spec)
    images = input_images(input_path)
    params, out_names, colors = handler_settings(spec, classes)
    bh = spec.bbox_handler_config
    batch_size = max(1, spec.inferencer_config.batch_size or 1)
    for start in range(0, len(images), batch_size):
        paths = images[start : start + batch_size]
        originals = [load_image_rgb(p) for p in paths]
        batch = np.stack([preprocess_image(img, (h, w), c) for img in originals])
        cov, bbox = predict(batch)
        frames = postprocess_detectnet(np.asarray(cov), np.asarray(bbox), classes, (h, w), params)
        for path, img, dets in zip(paths, originals, frames, strict=True):
            boxes = np.array([scale_boxes(d.bbox, (h, w), img.shape[:2]) for d in dets]).reshape(-1, 4)
            labels = [out_names[d.class_name] for d in dets]
            scores = [float(d.confidence) for d in dets]
            _write(path, img, boxes, labels, scores, output_dir, bh, colors)
    log.info("Inference done on %d images; outputs in %s", len(images), output_dir)
    return len(images)


def _write(path, image, boxes, labels, scores, output_dir, bh, colors) -> None:
    from tao_core.data.kitti import KittiObject, write_kitti_labels
    from tao_core.io.atomic import atomic_write_bytes
    from tao_core.visualize.draw import draw_detections

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
