"""Hungarian matching of OneFormer's mask queries to the target masks, on sampled points.

Per image, with P points drawn uniformly in [0, 1]^2 (one set shared by every query and target
of the image) and the predicted / target masks sampled there (bilinear), the cost of assigning
query q to target t is

    cost_class * (-softmax(class logits_q)[label_t])
  + cost_mask  * mean over points of the sigmoid cross-entropy of mask_q against mask_t
  + cost_dice  * (1 - (2 * sum(sigmoid(mask_q) * mask_t) + 1) / (sum(sigmoid(mask_q)) + sum(mask_t) + 1))

solved by tao_pytorch.detr.matcher.linear_assignment (scipy). NaN costs become 100 and an
all-NaN matrix matches nothing (SHI-Labs' linear_sum_assignment_with_nan), so one bad image
never stops training. Weights: the spec's class_weight / mask_weight / dice_weight.

outputs: {"pred_logits": (B, Q, K + 1), "pred_masks": (B, Q, h, w)};
targets: [{"labels": (T,) int64, "masks": (T, H, W) {0, 1}}] one per image.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.matcher import linear_assignment
from tao_pytorch.oneformer.model.point_sampling import point_sample

NAN_COST = 100.0


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits, (T, P) {0, 1} targets -> (Q, T) mean sigmoid cross-entropy over the points."""
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits, (T, P) {0, 1} targets -> (Q, T) dice loss (with +1 smoothing)."""
    probs = inputs.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0, num_points: int = 12544):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("model.one_former: class_weight, mask_weight and dice_weight are all 0: nothing to match on")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def image_cost(
        self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, tgt_masks: torch.Tensor,
        point_coords: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """(Q, K+1) logits, (Q, h, w) mask logits, (T,) labels, (T, H, W) masks -> (Q, T) cost.
        point_coords (1, P, 2) in [0, 1]; drawn uniformly when None."""
        if point_coords is None:
            point_coords = torch.rand(1, self.num_points, 2, device=masks.device)
        cost_class = -logits.softmax(-1)[:, labels]
        tgt = point_sample(tgt_masks[:, None].to(masks), point_coords.repeat(tgt_masks.shape[0], 1, 1),
                           align_corners=False).squeeze(1)
        pred = point_sample(masks[:, None], point_coords.repeat(masks.shape[0], 1, 1), align_corners=False).squeeze(1)
        with torch.autocast(device_type=masks.device.type, enabled=False):
            pred, tgt = pred.float(), tgt.float()
            cost = (self.cost_mask * batch_sigmoid_ce_cost(pred, tgt) + self.cost_dice * batch_dice_cost(pred, tgt)
                    + self.cost_class * cost_class.float())
        return cost

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
                ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """-> per image (query indices, target indices), int64, sorted by query index."""
        out = []
        for b, t in enumerate(targets):
            cost = self.image_cost(outputs["pred_logits"][b], outputs["pred_masks"][b], t["labels"], t["masks"]).cpu()
            if cost.numel() and torch.isnan(cost).all():
                cost = cost[:0, :0]
            elif cost.numel():
                cost = cost.masked_fill(torch.isnan(cost), NAN_COST)
            out.append(linear_assignment(cost))
        return out
