"""Layers shared by the window-attention vision transformers (GCViT, Swin).

DropPath (stochastic depth), the two-layer GELU MLP (`fc1`, `act`, `fc2`, `drop`: the parameter
names of the Swin / GCViT reference code) and the relative-position index of a square window.
"""

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability p in training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) index into the (2w-1)^2 relative-position bias table (Swin's layout: row offset
    times (2w-1) plus column offset, both shifted to start at 0).
    Built on the CPU whatever the default device (a meta-device model then needs no decompositions)."""
    r = torch.arange(window, device="cpu")
    coords = torch.stack(torch.meshgrid(r, r, indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]
