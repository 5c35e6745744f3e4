"""Hungarian matching between predictions and ground truth (one prediction per target box).

Cost (DINO / Deformable DETR with focal loss), per prediction i and target j of class c_j:
    class: alpha * (1 - p)^gamma * -log(p)  -  (1 - alpha) * p^gamma * -log(1 - p),   p = sigmoid(logit_i[c_j])
           (the focal loss of calling it c_j minus the focal loss of calling it background)
    L1:    sum |box_i - box_j| over (cx, cy, w, h)
    GIoU:  -GIoU(box_i, box_j)
C = cost_class * class + cost_bbox * L1 + cost_giou * GIoU, solved per image with
scipy.optimize.linear_sum_assignment (on CPU).
"""

from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou


def focal_class_cost(
    prob: torch.Tensor, tgt_ids: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """prob (P, K) sigmoid scores, tgt_ids (T,) -> (P, T) class cost."""
    neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos[:, tgt_ids] - neg[:, tgt_ids]


def linear_assignment(cost: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(P, T) cost -> (prediction indices, target indices), int64 on the CPU, sorted by prediction:
    the min(P, T) pairs of least total cost (scipy's linear_sum_assignment)."""
    i, j = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)


class HungarianMatcher(nn.Module):
    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("all matcher costs are 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    @torch.no_grad()
    def cost_matrix(self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]) -> torch.Tensor:
        """(B, Q, sum of targets over the batch) cost; image b's block is columns of its targets."""
        bs, nq = outputs["pred_logits"].shape[:2]
        prob = outputs["pred_logits"].flatten(0, 1).float().sigmoid()
        boxes = outputs["pred_boxes"].flatten(0, 1).float()
        tgt_ids = torch.cat([t["labels"] for t in targets]).long()
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).float()
        c_class = focal_class_cost(prob, tgt_ids, self.focal_alpha, self.focal_gamma)
        c_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        cost = self.cost_bbox * c_bbox + self.cost_class * c_class + self.cost_giou * c_giou
        return cost.view(bs, nq, -1)

    @torch.no_grad()
    def forward(self, outputs, targets) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """-> per image (prediction indices, target indices), int64, sorted by prediction index."""
        sizes = [len(t["boxes"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in targets]
        cost = self.cost_matrix(outputs, targets).cpu()
        return [linear_assignment(c[b]) for b, c in enumerate(cost.split(sizes, -1))]
