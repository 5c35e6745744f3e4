"""DINO contrastive denoising (CDN) queries (Zhang et al. 2022, §3.3), device-agnostic.

During training, noised copies of the ground-truth boxes are fed to the decoder next to the
matching queries, and the model learns to reconstruct them:
  * the dn queries come in `num_dn_group` groups; each group holds `max_gt` positive queries
    (small box noise, to reconstruct the box) followed by `max_gt` negative queries (box noise
    between 1x and 2x the half size, to be classified as background); images with fewer boxes
    leave padding slots (zero label embedding and box);
  * labels are flipped to a random class with probability label_noise_ratio / 2;
  * the query order is [dn queries (pad_size = 2 * max_gt * groups) | matching queries].
The self-attention mask (True = may not attend) stops matching queries from seeing any dn
query (they would see the answers) and each dn group from seeing the other groups; within a
group, and towards matching queries, attention is free.

Group count: dn_number is doubled (positive + negative) and, when that is >= 100, divided by
2 * max_gt, so the total number of dn queries stays around 2 * dn_number (IDEA DINO's rule).
"""

from typing import Dict, List, Optional

import torch

from tao_pytorch.detr.box_ops import inverse_sigmoid


def num_dn_groups(dn_number: int, max_gt: int) -> int:
    dn = dn_number * 2
    if max_gt == 0:
        return 1
    if dn >= 100:
        dn = dn // (max_gt * 2)
    return max(dn, 1)


def dn_attention_mask(pad_size: int, num_queries: int, groups: int, device=None) -> torch.Tensor:
    """(pad_size + num_queries)^2 bool mask, True = blocked (see module docstring)."""
    size = pad_size + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    group = pad_size // groups if groups else 0
    for g in range(groups):
        lo, hi = group * g, group * (g + 1)
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:pad_size] = True
    return mask


def prepare_for_cdn(
    targets: Optional[List[Dict[str, torch.Tensor]]],
    dn_number: int,
    label_noise_ratio: float,
    box_noise_scale: float,
    num_queries: int,
    num_classes: int,
    hidden_dim: int,
    label_enc: torch.nn.Embedding,
    training: bool,
    inverse_sigmoid_eps: float = 1e-3,
):
    """-> (input_query_label (B, pad, C), input_query_bbox (B, pad, 4) unsigmoided, attn_mask, dn_meta)
    or four Nones when not training / no targets / dn_number <= 0."""
    if not training or targets is None or dn_number <= 0:
        return None, None, None, None
    device = label_enc.weight.device
    known_num = [len(t["labels"]) for t in targets]
    batch_size = len(targets)
    max_gt = max(known_num) if known_num else 0
    groups = num_dn_groups(dn_number, max_gt)
    pad_size = 2 * max_gt * groups

    labels = torch.cat([t["labels"] for t in targets]).long().to(device)
    boxes = torch.cat([t["boxes"] for t in targets]).float().to(device)
    batch_idx = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(known_num)])
    n_boxes = len(boxes)
    # 2 * groups copies of all boxes: copy 2g = positives of group g, copy 2g+1 = its negatives
    known_labels = labels.repeat(2 * groups)
    known_bid = batch_idx.repeat(2 * groups)
    known_boxes = boxes.repeat(2 * groups, 1)

    # The random draws below (what, how many, in which order) are the reference's, so a seeded
    # training step reproduces IDEA DINO's denoising queries exactly (checked in the oracle run).
    noised_labels = known_labels.clone()
    if label_noise_ratio > 0 and len(noised_labels):
        flip = torch.rand(noised_labels.shape, device=device) < label_noise_ratio * 0.5
        chosen = torch.nonzero(flip).view(-1)
        noised_labels = noised_labels.scatter(0, chosen, torch.randint_like(chosen, 0, num_classes))

    noised_boxes = known_boxes.clone()
    if box_noise_scale > 0 and len(noised_boxes):
        xyxy = torch.cat([known_boxes[:, :2] - known_boxes[:, 2:] / 2, known_boxes[:, :2] + known_boxes[:, 2:] / 2], 1)
        half_wh = torch.cat([known_boxes[:, 2:] / 2, known_boxes[:, 2:] / 2], 1)
        sign = torch.randint_like(known_boxes, 0, 2, dtype=torch.float32) * 2.0 - 1.0
        part = torch.rand_like(known_boxes)
        is_negative = (torch.arange(len(known_boxes), device=device) // max(n_boxes, 1)) % 2 == 1
        part = part + is_negative[:, None].float()  # negatives: |noise| in [1, 2) x half size
        xyxy = (xyxy + part * sign * half_wh * box_noise_scale).clamp(0.0, 1.0)
        noised_boxes = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)

    input_query_label = torch.zeros(batch_size, pad_size, hidden_dim, device=device)
    input_query_bbox = torch.zeros(batch_size, pad_size, 4, device=device)
    if n_boxes:
        # slot of box k of image b in copy c: c * max_gt + (index of k within image b)
        within = torch.cat([torch.arange(n, device=device) for n in known_num])
        slots = torch.cat([within + max_gt * c for c in range(2 * groups)])
        input_query_label = input_query_label.index_put((known_bid, slots), label_enc(noised_labels))
        input_query_bbox = input_query_bbox.index_put(
            (known_bid, slots), inverse_sigmoid(noised_boxes, inverse_sigmoid_eps)
        )
    attn_mask = dn_attention_mask(pad_size, num_queries, groups, device)
    dn_meta = {"pad_size": pad_size, "num_dn_group": groups}
    return input_query_label, input_query_bbox, attn_mask, dn_meta


def dn_post_process(outputs_class: torch.Tensor, outputs_coord: torch.Tensor, dn_meta, aux_loss: bool):
    """Split (n_dec, B, pad + Q, ...) predictions into dn part (stored in dn_meta for the criterion)
    and matching part (returned)."""
    if dn_meta and dn_meta["pad_size"] > 0:
        pad = dn_meta["pad_size"]
        known_class, known_coord = outputs_class[:, :, :pad], outputs_coord[:, :, :pad]
        out = {"pred_logits": known_class[-1], "pred_boxes": known_coord[-1]}
        if aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": c, "pred_boxes": b} for c, b in zip(known_class[:-1], known_coord[:-1])
            ]
        dn_meta["output_known_lbs_bboxes"] = out
        outputs_class, outputs_coord = outputs_class[:, :, pad:], outputs_coord[:, :, pad:]
    return outputs_class, outputs_coord
