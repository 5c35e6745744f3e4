"""Evaluate a DetectNet_v2 model on the validation (or training) frames with tao-core's AP.

Predictions go through tao_core.processing.detectnet (the same decode and clustering every
runtime uses) with each class's postprocessing_config clustering_config; the AP is
tao_core.metrics.detectnet.evaluate_detections with evaluation_config's per-class IoU
(minimum_detection_ground_truth_overlap), box filters (evaluation_box_config) and AP mode.
Boxes are compared in network-input pixels, as TAO does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from tao_core.metrics.detectnet import evaluate_detections
from tao_core.processing.detectnet import postprocess_detectnet
from tao_core.tasks.detectnet_v2 import clustering_params, kpi, metric_options, report  # noqa: F401 (re-exported)
from tao_tf.detectnet_v2.data.pipeline import bbox_scale_offset, class_names, input_shape, numpy_frames

log = logging.getLogger("tao_tf.detectnet_v2.evaluate")


def run_model(predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], experiment, split: str,
              batch_size: int = 8):  # fmt: skip
    """(ground truth, predictions) dicts for evaluate_detections; `predict` maps NCHW images to (cov, bbox)."""
    names = class_names(experiment)
    _, h, w = input_shape(experiment)
    scale, offset = bbox_scale_offset(experiment)
    params = clustering_params(experiment)
    gt, preds, batch = {}, {}, []

    def flush():
        images = np.stack([f["image"].transpose(2, 0, 1) for f in batch]).astype(np.float32)
        cov, bbox = predict(images)
        frames = postprocess_detectnet(np.asarray(cov), np.asarray(bbox), names, (h, w), params, scale, offset)
        for f, dets in zip(batch, frames, strict=True):
            preds[f["frame_id"]] = [(d.class_name, d.bbox.tolist(), float(d.confidence)) for d in dets]
        batch.clear()

    for frame in numpy_frames(experiment, split):
        key = frame["frame_id"]
        gt[key] = [(names[c], box.tolist()) for c, box in zip(frame["class_ids"], frame["boxes"], strict=True)
                   if c >= 0]  # fmt: skip
        batch.append(frame)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return gt, preds


def keras_predictor(model):
    def predict(images):
        cov, bbox = model(images, training=False)
        return cov.numpy(), bbox.numpy()

    return predict


def evaluate(predict, experiment, split: str = "val", batch_size: int = 8) -> dict:
    gt, preds = run_model(predict, experiment, split, batch_size)
    return evaluate_detections(gt, preds, class_names(experiment), **metric_options(experiment))
