"""Set criterion of DINO / Deformable DETR: match, then sigmoid focal + L1 + GIoU losses.

For every set of predictions the model returns (final layer, each earlier decoder layer in
`aux_outputs`, the encoder proposals in `enc_outputs` (Deformable DETR two-stage) or
`interm_outputs` (DINO), and DINO's denoising queries in `dn_meta`), the criterion matches the
predictions to the targets and computes, normalised by the number of target boxes in the batch
(averaged over processes when torch.distributed is initialised, at least 1):

    loss_ce   = sum over queries and classes of the sigmoid focal loss against one-hot targets
                (unmatched queries: all zeros), / num_boxes        [= mean over queries * Q / num_boxes]
    loss_bbox = sum |pred - target| over matched (cx, cy, w, h), / num_boxes
    loss_giou = sum (1 - GIoU(pred, target)) over matched boxes, / num_boxes
    loss_xy, loss_hw: the L1 split into centre and size (logged only, no gradient)

Keys get a suffix per prediction set: '' final, '_<i>' decoder layer i, '_enc' / '_interm'
encoder proposals, '_dn' / '_dn_<i>' denoising. `weight_dict` (see `build_weight_dict`) says how
the total is formed; `total_loss` forms it.

Targets: list (one per image) of {'labels': int64 (n,), 'boxes': float (n, 4) cxcywh in [0, 1]}.
"""

from typing import Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy, generalized_box_iou


def sigmoid_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on logits (B, Q, K) vs {0, 1} targets, summed over classes,
    averaged over queries, summed over the batch, divided by num_boxes."""
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def _src_index(indices):
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src = torch.cat([src for src, _ in indices])
    return batch, src


class SetCriterion(nn.Module):
    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        losses=("labels", "boxes"),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    # ------------------------------------------------------------------ single losses

    def loss_labels(self, outputs, targets, indices, num_boxes, log=True):
        logits = outputs["pred_logits"]
        batch, src = _src_index(indices)
        matched_classes = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).long()
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch, src] = matched_classes.to(logits.device)
        # one-hot with an extra "no object" column that is then dropped: background = all zeros
        onehot = torch.zeros(*logits.shape[:2], self.num_classes + 1, dtype=logits.dtype, device=logits.device)
        onehot.scatter_(2, target_classes.unsqueeze(-1), 1)
        onehot = onehot[:, :, :-1]
        loss = sigmoid_focal_loss(logits, onehot, num_boxes, self.focal_alpha, self.focal_gamma) * logits.shape[1]
        losses = {"loss_ce": loss}
        if log:
            with torch.no_grad():
                if len(matched_classes):
                    acc = (logits[batch, src].argmax(-1) == matched_classes.to(logits.device)).float().mean() * 100
                    losses["class_error"] = 100 - acc
                else:
                    losses["class_error"] = torch.zeros((), device=logits.device)
        return losses

    def loss_boxes(self, outputs, targets, indices, num_boxes):
        batch, src = _src_index(indices)
        src_boxes = outputs["pred_boxes"][batch, src]
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src_boxes)
        l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="none")
        if len(tgt_boxes):
            giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)))
        else:
            giou = src_boxes.new_ones(0)
        losses = {"loss_bbox": l1.sum() / num_boxes, "loss_giou": (1 - giou).sum() / num_boxes}
        with torch.no_grad():
            losses["loss_xy"] = l1[..., :2].sum() / num_boxes
            losses["loss_hw"] = l1[..., 2:].sum() / num_boxes
        return losses

    def get_loss(self, loss, outputs, targets, indices, num_boxes, **kwargs):
        if loss == "labels":
            return self.loss_labels(outputs, targets, indices, num_boxes, **kwargs)
        if loss == "boxes":
            return self.loss_boxes(outputs, targets, indices, num_boxes)
        raise ValueError(f"unknown loss {loss!r}; known: labels, boxes")

    def _set_losses(self, outputs, targets, num_boxes, suffix: str, log: bool, indices=None):
        if indices is None:
            indices = self.matcher(outputs, targets)
        indices = [(i.to(outputs["pred_logits"].device), j.to(outputs["pred_logits"].device)) for i, j in indices]
        out = {}
        for loss in self.losses:
            kwargs = {"log": log} if loss == "labels" else {}
            out.update(self.get_loss(loss, outputs, targets, indices, num_boxes, **kwargs))
        return {k + suffix: v for k, v in out.items()}

    # ------------------------------------------------------------------ all losses

    @staticmethod
    def num_boxes(targets, device) -> float:
        n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(n)
            n = n / dist.get_world_size()
        return max(n.item(), 1.0)

    def forward(self, outputs: Dict, targets: List[Dict[str, torch.Tensor]], num_boxes: Optional[float] = None):
        device = outputs["pred_logits"].device
        if num_boxes is None:
            num_boxes = self.num_boxes(targets, device)
        main = {k: v for k, v in outputs.items() if k in ("pred_logits", "pred_boxes")}
        losses = self._set_losses(main, targets, num_boxes, "", log=True)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._set_losses(aux, targets, num_boxes, f"_{i}", log=False))
        if "enc_outputs" in outputs:
            # Deformable DETR two-stage: proposals are scored as object / not object (one class)
            binary = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            losses.update(self._set_losses(outputs["enc_outputs"], binary, num_boxes, "_enc", log=False))
        if "interm_outputs" in outputs:
            losses.update(self._set_losses(outputs["interm_outputs"], targets, num_boxes, "_interm", log=False))
        dn_meta = outputs.get("dn_meta")
        if dn_meta is not None:
            losses.update(self.dn_losses(outputs, targets, num_boxes, dn_meta))
        return losses

    def dn_losses(self, outputs, targets, num_boxes, dn_meta):
        """DINO denoising: each positive dn query is bound to its own target (no matching); the
        negative ones only appear in the class loss, as background."""
        n_aux = len(outputs.get("aux_outputs", []))
        device = outputs["pred_logits"].device
        known = dn_meta.get("output_known_lbs_bboxes")
        if known is None:
            # no denoising in this step: zeros keep the logged keys (and the loss graph) stable
            zero = outputs["pred_logits"].sum() * 0.0
            names = ["loss_bbox", "loss_giou", "loss_ce", "loss_xy", "loss_hw"]
            out = {f"{n}_dn": zero for n in names}
            out.update({f"{n}_dn_{i}": zero for i in range(n_aux) for n in names})
            return out
        groups = dn_meta["num_dn_group"]
        single_pad = dn_meta["pad_size"] // groups  # one group = max_gt positives + max_gt negatives
        indices = []
        for t in targets:
            n = len(t["labels"])
            tgt = torch.arange(n, dtype=torch.int64, device=device).repeat(groups)
            src = (torch.arange(groups, dtype=torch.int64, device=device) * single_pad).repeat_interleave(n) + tgt
            indices.append((src, tgt))
        dn_boxes = num_boxes * groups
        out = self._set_losses(known, targets, dn_boxes, "_dn", log=False, indices=indices)
        for i, aux in enumerate(known.get("aux_outputs", [])):
            out.update(self._set_losses(aux, targets, dn_boxes, f"_dn_{i}", log=False, indices=indices))
        return out


def build_weight_dict(
    cls_loss_coef: float,
    bbox_loss_coef: float,
    giou_loss_coef: float,
    dec_layers: int,
    aux_loss: bool = True,
    enc_suffix: Optional[str] = None,
    enc_loss_coef: float = 1.0,
    no_enc_box_loss: bool = False,
    use_dn: bool = False,
) -> Dict[str, float]:
    """Weights of the loss terms that enter the total.

    enc_suffix: '_enc' (Deformable DETR two-stage) or '_interm' (DINO), weights x enc_loss_coef
    (DINO's interm_loss_coef), box terms 0 if no_enc_box_loss. use_dn adds '_dn' copies.
    """
    base = {"loss_ce": cls_loss_coef, "loss_bbox": bbox_loss_coef, "loss_giou": giou_loss_coef}
    weights = dict(base)
    if use_dn:
        weights.update({k + "_dn": v for k, v in base.items()})
    if aux_loss:
        for i in range(dec_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items()})
            if use_dn:
                weights.update({f"{k}_dn_{i}": v for k, v in base.items()})
    if enc_suffix:
        for k, v in base.items():
            box_term = k != "loss_ce"
            weights[k + enc_suffix] = 0.0 if (box_term and no_enc_box_loss) else v * enc_loss_coef
    return weights


def total_loss(losses: Dict[str, torch.Tensor], weight_dict: Dict[str, float]) -> torch.Tensor:
    return sum(losses[k] * w for k, w in weight_dict.items() if k in losses)
