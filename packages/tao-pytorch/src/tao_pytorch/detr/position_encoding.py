"""Sine position encoding of a feature map, aware of the padding mask.

Each valid pixel gets its row / column index counted only over valid pixels (cumsum of the
inverted mask: 1, 2, ..., n along each axis), so padding added to the right / bottom does not
shift the encoding of the image. With normalize=True the counts are mapped to (0, scale]:

    (count - offset) / (n + 1e-6) * scale

and the two reference networks disagree on `offset`, so each passes its own (`NORMALIZE_OFFSET`
of its model module): Deformable DETR subtracts 0.5 (the pixel centre), IDEA-Research/DINO and
TAO's DINO use the plain count (offset 0). Mixing them up shifts every position embedding and
the whole DINO output with it.

Deformable DETR uses one temperature (10000); DINO uses separate temperatures for height and
width (pe_temperatureH / pe_temperatureW, 20 by default), hence the two arguments.
"""

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """mask (B, H, W) bool, True = padding -> (B, 2 * num_pos_feats, H, W); channels = [y, x] halves.

    normalize_offset: subtracted from the valid-pixel count before normalising (see module docstring);
    it has no default so that every network states its reference's convention.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature_h: float,
        temperature_w: float,
        *,
        normalize_offset: float,
        normalize: bool = True,
        scale: float = 2 * math.pi,
    ):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature_h = temperature_h
        self.temperature_w = temperature_w
        self.normalize_offset = float(normalize_offset)
        self.normalize = normalize
        self.scale = scale

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature_h={self.temperature_h}, "
            f"temperature_w={self.temperature_w}, normalize={self.normalize}, "
            f"normalize_offset={self.normalize_offset}"
        )

    def _embed(self, coord: torch.Tensor, temperature: float) -> torch.Tensor:
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=coord.device)
        dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos = coord[..., None] / dim_t
        # interleave sin (even channels) and cos (odd channels)
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        not_mask = (~mask).to(torch.float32)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y = (y - self.normalize_offset) / (y[:, -1:, :] + eps) * self.scale
            x = (x - self.normalize_offset) / (x[:, :, -1:] + eps) * self.scale
        pos = torch.cat((self._embed(y, self.temperature_h), self._embed(x, self.temperature_w)), dim=-1)
        return pos.permute(0, 3, 1, 2)
