"""DETR post-processing of the PyTorch tasks: tao-core's numpy top-k decode, the one the engines run.

`PostProcess(num_select)(outputs, target_sizes)` hands the model's `pred_logits` / `pred_boxes`
(any device, any float dtype) to `tao_core.processing.detr.decode_topk`: sigmoid, the
num_select best (query, class) pairs, boxes to xyxy pixels of the original image, clipped.
Validation during training, evaluate and inference therefore decode exactly as tao-deploy's
engines do (ties included: the numpy decode orders them deterministically, torch.topk did not),
so a PyTorch model and its engine are compared output for output. `benchmarks/detr_decode.py`
measures it against the torch version this replaced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tao_core.processing.detr import decode_topk


def _numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.is_floating_point() else t).cpu().numpy()
    return np.asarray(t)


class PostProcess:
    """Top-k decode of a DETR network's outputs (see the module docstring)."""

    def __init__(self, num_select: int = 100):
        self.num_select = int(num_select)

    def __call__(self, outputs: dict, target_sizes: Any) -> list[dict[str, np.ndarray]]:
        """target_sizes (B, 2) = (h, w) of the original images -> one {'scores' (k,) float32,
        'labels' (k,) int64, 'boxes' (k, 4) float32 xyxy pixels} per image, k = min(num_select, Q*C)."""
        return decode_topk(_numpy(outputs["pred_logits"]), _numpy(outputs["pred_boxes"]), _numpy(target_sizes),
                           self.num_select)


def build_postprocess(cfg) -> PostProcess:
    """The post-processing of an experiment spec: model.num_select detections per image."""
    return PostProcess(num_select=cfg.model.num_select)
