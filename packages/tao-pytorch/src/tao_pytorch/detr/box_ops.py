"""Box conversions and (generalized) IoU, boxes as (..., 4) tensors.

cxcywh = (center x, center y, width, height); xyxy = (x1, y1, x2, y2). DETR models predict
cxcywh normalised to [0, 1] by the unpadded image size.
"""

import torch


def box_cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_iou(a: torch.Tensor, b: torch.Tensor):
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4): returns (iou (N, M), union (N, M))."""
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019) of xyxy boxes: (N, M) in [-1, 1].

    GIoU = IoU - (area(C) - union) / area(C), C the smallest box enclosing both.
    Degenerate boxes (x2 < x1) would give NaN/inf silently, so they are rejected.
    """
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
        if not (a[:, 2:] >= a[:, :2]).all() or not (b[:, 2:] >= b[:, :2]).all():
            raise ValueError("generalized_box_iou: boxes must be xyxy with x2 >= x1 and y2 >= y1")
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps, so 0 and 1 stay finite.

    Deformable DETR uses eps=1e-5, IDEA's DINO 1e-3 (each model passes its own).
    """
    # clamp(x, 0, 1) then clamp(min=eps) on x and 1 - x, written as two clamps: the same values,
    # and a graph the dynamo exporter + onnxscript optimiser handle (chained Clips broke its folding)
    return torch.log(x.clamp(min=eps, max=1.0) / (1 - x).clamp(min=eps, max=1.0))
