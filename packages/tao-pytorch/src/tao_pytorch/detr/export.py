"""ONNX export contract of TAO's DETR models: input `inputs` (B, 3, H, W) (no mask channel, no
padding), outputs `pred_logits` (B, Q, K) raw logits and `pred_boxes` (B, Q, 4) normalised cxcywh."""

import torch
from torch import nn

INPUT_NAMES = ["inputs"]
OUTPUT_NAMES = ["pred_logits", "pred_boxes"]


class DetrExportWrapper(nn.Module):
    """Runs a DETR model and returns the tuple (pred_logits, pred_boxes) the ONNX graph exposes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        out = self.model(inputs)
        return out["pred_logits"], out["pred_boxes"]
