"""Point sampling for the mask losses (PointRend's, as Mask2Former / OneFormer use it).

Masks are compared on a few thousand points instead of every pixel:
- `point_sample(maps, coords)`: bilinear values of (N, C, H, W) maps at (N, P, 2) points given
  as (x, y) in [0, 1] over the map (grid_sample, align_corners=False: pixel centres at
  (i + 0.5) / W, zeros outside);
- `get_uncertain_point_coords_with_randomness`: draws oversample_ratio * P uniform points,
  keeps the importance_sample_ratio * P most uncertain ones (uncertainty = -|logit|: closest to
  the decision boundary) and fills up with fresh uniform points.
The random draws are, in number, shape and order, those of the reference, so the same torch
seed gives the same points as SHI-Labs' / transformers' code.
"""

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor, **grid_sample_kwargs) -> torch.Tensor:
    """maps (N, C, H, W), coords (N, P, 2) or (N, Hg, Wg, 2) in [0, 1] -> (N, C, P) or (N, C, Hg, Wg)."""
    flat = coords.dim() == 3
    if flat:
        coords = coords.unsqueeze(2)
    out = F.grid_sample(maps, 2.0 * coords - 1.0, **grid_sample_kwargs)
    return out.squeeze(3) if flat else out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """(R, 1, ...) class-agnostic mask logits -> uncertainty -|logit| (highest at the boundary)."""
    if logits.shape[1] != 1:
        raise ValueError(f"uncertainty of class-agnostic logits (R, 1, ...) expected, got {tuple(logits.shape)}")
    return -logits.abs()


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """(R, 1, H, W) logits -> (R, num_points, 2) point coordinates in [0, 1] (see module docstring)."""
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    n = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, num_sampled, 2, device=coarse_logits.device)
    uncertainty = uncertainty_func(point_sample(coarse_logits, coords, align_corners=False))
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]
    coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(n, num_random, 2, device=coarse_logits.device)], dim=1)
    return coords
