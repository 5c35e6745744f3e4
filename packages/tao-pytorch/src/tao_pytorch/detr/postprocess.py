"""DETR post-processing: top-k over all (query, class) scores, boxes to pixels.

The math, which tao-core's numpy twin must repeat exactly (keep the two in step):
    scores = sigmoid(pred_logits)                               (B, Q, K)
    top    = the num_select largest of scores.reshape(B, Q*K), in descending order
    query  = top_index // K,  label = top_index % K              (label = class index = COCO id)
    box    = cxcywh -> xyxy of pred_boxes[query], times (w, h, w, h) of target_sizes (h, w) per image
    box    = box clipped to the image (clip=True, the default, in both twins)
No NMS and no score threshold; thresholds belong to the caller. Boxes are clipped so that the
PyTorch tasks and the engines (TAO's deploy clips, its PyTorch path does not) give the same
boxes; ground truth is clipped at load too, so clipping never lowers an IoU.
Equal scores may come out in any order (torch.topk and numpy sorts differ there).
"""

from typing import Dict, List

import torch
from torch import nn

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy


def decode_topk(
    pred_logits: torch.Tensor, pred_boxes: torch.Tensor, target_sizes: torch.Tensor, num_select: int, clip: bool = True
):
    """-> scores (B, k), labels (B, k) int64, boxes (B, k, 4) xyxy pixels; k = min(num_select, Q*K)."""
    bs, nq, nc = pred_logits.shape
    prob = pred_logits.sigmoid().reshape(bs, nq * nc)
    scores, idx = torch.topk(prob, min(num_select, nq * nc), dim=1)
    query = torch.div(idx, nc, rounding_mode="floor")
    labels = idx % nc
    boxes = torch.gather(box_cxcywh_to_xyxy(pred_boxes), 1, query.unsqueeze(-1).repeat(1, 1, 4))
    h, w = target_sizes.to(boxes.dtype).unbind(1)
    scale = torch.stack([w, h, w, h], dim=1)[:, None, :]
    boxes = boxes * scale
    if clip:
        boxes = torch.minimum(boxes.clamp(min=0), scale)
    return scores, labels, boxes


class PostProcess(nn.Module):
    def __init__(self, num_select: int = 100):
        super().__init__()
        self.num_select = num_select

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], target_sizes: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """target_sizes (B, 2) = (h, w) of the original images -> [{'scores', 'labels', 'boxes'}] per image."""
        scores, labels, boxes = decode_topk(
            outputs["pred_logits"], outputs["pred_boxes"], target_sizes, self.num_select
        )
        return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, boxes)]
