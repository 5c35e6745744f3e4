"""OneFormer's set criterion (SHI-Labs/OneFormer `SetCriterion`): match, then class / mask / dice
losses on the matched queries, plus the query-text contrastive loss.

Inputs
    outputs: {"pred_logits": (B, Q, K + 1) class logits (last = no object),
              "pred_masks": (B, Q, h, w) mask logits,
              "contrastive_logits": (B, ...) task-conditioned object queries,    (training with text)
              "texts": (B, ...) text queries of the same size,                  (training with text)
              "aux_outputs": [{"pred_logits", "pred_masks"}, ...] earlier decoder layers}
    targets: [{"labels": (T,) int64, "masks": (T, H, W) {0, 1}}] one per image.

Losses (keys as in the reference; '_<i>' for aux_outputs[i], which get no contrastive loss):
    loss_ce          cross-entropy over the K + 1 classes of every query, unmatched ones labelled
                     "no object"; class weights 1, no_object_weight for "no object"; weighted mean
    loss_mask        sigmoid cross-entropy of matched masks on train_num_points points per mask
                     (mostly the most uncertain ones, see point_sampling), mean over points,
                     summed over masks / num_masks
    loss_dice        dice loss on the same points, summed over masks / num_masks
    loss_contrastive CLIP-style symmetric cross-entropy between the L2-normalised flattened object
                     and text queries of the batch (gathered over processes), logits scaled by
                     exp(logit_scale) (<= 100), logit_scale learnable, initialised to log(1 / temperature)
num_masks = targets in the batch averaged over processes, at least 1. forward returns the
unweighted losses; `weighted(losses)` multiplies by weight_dict and drops the terms it lacks
(as the reference's model does), `tao_pytorch.detr.criterion.total_loss` sums them.

The module keeps the reference's state (`empty_weight` buffer, `logit_scale` parameter), so the
`criterion.*` keys of SHI-Labs' checkpoints load.
"""

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.criterion import SetCriterion as DetrSetCriterion
from tao_pytorch.detr.criterion import _src_index
from tao_pytorch.oneformer.model.matcher import HungarianMatcher
from tao_pytorch.oneformer.model.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

LOSSES = ("labels", "masks", "contrastive")
MAX_LOGIT_SCALE = 100.0


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """(M, P) logits vs {0, 1} -> mean over points, sum over masks, / num_masks."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """(M, P) logits vs {0, 1} -> 1 - (2 |p t| + 1) / (|p| + |t| + 1) per mask, summed, / num_masks."""
    probs = inputs.sigmoid().flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def pad_masks(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """[(T_b, H_b, W_b)] -> (B, max T, max H, max W), zero-padded right / bottom (and in T)."""
    t = max(m.shape[0] for m in masks)
    h = max(m.shape[1] for m in masks)
    w = max(m.shape[2] for m in masks)
    out = masks[0].new_zeros((len(masks), t, h, w))
    for b, m in enumerate(masks):
        out[b, : m.shape[0], : m.shape[1], : m.shape[2]] = m
    return out


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All processes' x concatenated along dim 0, gradients flowing back to each (DDP)."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), 0)


class SetCriterion(nn.Module):
    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: Dict[str, float],
        eos_coef: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        contrast_temperature: Optional[float] = None,
        losses: Sequence[str] = LOSSES,
    ):
        super().__init__()
        unknown = [n for n in losses if n not in LOSSES]
        if unknown:
            raise ValueError(f"unknown losses {unknown}; known: {list(LOSSES)}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = list(losses)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.contrast_temperature = contrast_temperature
        if contrast_temperature is not None:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / contrast_temperature)))

    # ------------------------------------------------------------------ single losses

    def loss_labels(self, outputs, targets, indices, num_masks):
        logits = outputs["pred_logits"].float()
        batch, src = _src_index(indices)
        matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch, src] = matched
        # the weighted mean: sum of weight * CE over all queries / sum of their weights (the reference's)
        return {"loss_ce": F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)}

    def loss_masks(self, outputs, targets, indices, num_masks):
        batch, src = _src_index(indices)
        tgt = torch.cat([j for _, j in indices])
        src_masks = outputs["pred_masks"][batch, src][:, None]
        target_masks = pad_masks([t["masks"] for t in targets]).to(src_masks)[batch, tgt][:, None]
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src_masks, calculate_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = point_sample(target_masks, coords, align_corners=False).squeeze(1)
        point_logits = point_sample(src_masks, coords, align_corners=False).squeeze(1)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def loss_contrastive(self, outputs, targets, indices, num_masks):
        if self.contrast_temperature is None:
            raise ValueError("the contrastive loss needs contrast_temperature (model.one_former.contrastive_temperature)")
        image_x = F.normalize(outputs["contrastive_logits"].float().flatten(1), dim=-1)
        text_x = F.normalize(outputs["texts"].float().flatten(1), dim=-1)
        b = image_x.shape[0]
        labels = torch.arange(b, dtype=torch.long, device=image_x.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            labels = labels + b * dist.get_rank()
            logits_per_img = image_x @ _gather_with_grad(text_x).t()
            logits_per_text = text_x @ _gather_with_grad(image_x).t()
        else:
            logits_per_img = image_x @ text_x.t()
            logits_per_text = text_x @ image_x.t()
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        loss = F.cross_entropy(logits_per_img * scale, labels) + F.cross_entropy(logits_per_text * scale, labels)
        return {"loss_contrastive": loss}

    def get_loss(self, loss, outputs, targets, indices, num_masks):
        fn = {"labels": self.loss_labels, "masks": self.loss_masks, "contrastive": self.loss_contrastive}[loss]
        return fn(outputs, targets, indices, num_masks)

    # ------------------------------------------------------------------ all losses

    def forward(self, outputs: Dict, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        indices = self.matcher(main, targets)
        device = outputs["pred_logits"].device
        indices = [(i.to(device), j.to(device)) for i, j in indices]
        num_masks = DetrSetCriterion.num_boxes(targets, device)
        # without text queries (evaluation) there is no contrastive term to compute
        with_text = "texts" in outputs and outputs.get("contrastive_logits") is not None
        losses = {}
        for loss in self.losses:
            if loss != "contrastive" or with_text:
                losses.update(self.get_loss(loss, main, targets, indices, num_masks))
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_indices = [(a.to(device), b.to(device)) for a, b in self.matcher(aux, targets)]
            for loss in self.losses:
                if loss != "contrastive":
                    losses.update({f"{k}_{i}": v for k, v in self.get_loss(loss, aux, targets, aux_indices, num_masks).items()})
        return losses

    def weighted(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The terms of weight_dict, multiplied by their weights (others dropped, as the reference does)."""
        return {k: v * self.weight_dict[k] for k, v in losses.items() if k in self.weight_dict}


def build_weight_dict(decoder) -> Dict[str, float]:
    """The reference's weights from a OneFormerDecoderConfig: class / mask / dice / contrastive,
    repeated with '_<i>' for the dec_layers - 1 earlier layers under deep supervision."""
    base = {
        "loss_ce": decoder.class_weight,
        "loss_mask": decoder.mask_weight,
        "loss_dice": decoder.dice_weight,
        "loss_contrastive": decoder.contrastive_weight,
    }
    weights = dict(base)
    if decoder.deep_supervision:
        for i in range(decoder.dec_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items()})
    return weights


def build_criterion(decoder, num_classes: int) -> SetCriterion:
    """OneFormer's criterion from a tao_core OneFormerDecoderConfig (`model.one_former`) and
    `model.sem_seg_head.num_classes`; the matcher uses the loss weights as its costs."""
    matcher = HungarianMatcher(
        cost_class=decoder.class_weight, cost_mask=decoder.mask_weight, cost_dice=decoder.dice_weight,
        num_points=decoder.train_num_points,
    )
    return SetCriterion(
        num_classes,
        matcher=matcher,
        weight_dict=build_weight_dict(decoder),
        eos_coef=decoder.no_object_weight,
        num_points=decoder.train_num_points,
        oversample_ratio=decoder.oversample_ratio,
        importance_sample_ratio=decoder.importance_sample_ratio,
        contrast_temperature=decoder.contrastive_temperature,
    )
