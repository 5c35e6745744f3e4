"""From the network input to multi-scale features, masks and position encodings.

TAO feeds DETR models a (B, 4, H, W) tensor: 3 normalised image channels and 1 padding-mask
channel (1 = padded), images padded to the batch's largest size. A (B, 3, H, W) input (ONNX
export, fixed-size inference) means "no padding".

`Joiner` keeps the reference layout `backbone.0.body.*` (trunk) / `backbone.1` (position
encoding, parameter-free), so detector keys line up with Deformable DETR / DINO checkpoints.
`build_input_proj` builds `input_proj.<i>.{0,1}`: a 1x1 conv + GroupNorm per backbone level,
then 3x3 stride-2 conv + GroupNorm for each extra level (return_interm_indices entry 4).
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones import build_backbone_body
from tao_pytorch.detr.position_encoding import PositionEmbeddingSine


def split_inputs(samples: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, 4, H, W) or (B, 3, H, W) -> images (B, 3, H, W), padding mask (B, H, W) bool.

    Padded pixels are zeroed: what a collate function wrote there cannot reach the features
    (TAO's collate pads with zeros, so this changes nothing for its data).
    """
    if samples.dim() != 4 or samples.shape[1] not in (3, 4):
        raise ValueError(f"expected input (B, 3 or 4, H, W), got {tuple(samples.shape)}")
    if samples.shape[1] == 3:
        mask = torch.zeros_like(samples[:, 0], dtype=torch.bool)
        return samples, mask
    mask = samples[:, 3] > 0.5
    images = samples[:, :3] * (~mask)[:, None].to(samples.dtype)
    return images, mask


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour resize of a (B, H, W) bool mask to `size` (h, w)."""
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5


class BackboneBase(nn.Module):
    """Trunk in `body`; returns [(feature, mask at that feature's size)] per returned stage."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.num_channels = list(body.num_channels)
        self.strides = list(body.strides)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        return [(f, resize_mask(mask, f.shape[-2:])) for f in self.body(images)]


class Joiner(nn.Sequential):
    """Sequential(backbone, position_embedding): features, masks and their position encodings."""

    def __init__(self, backbone: BackboneBase, position_embedding: nn.Module):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels
        self.strides = backbone.strides

    def forward(self, images: torch.Tensor, mask: torch.Tensor):
        feats = self[0](images, mask)
        pos = [self[1](m).to(f.dtype) for f, m in feats]
        return feats, pos


def build_joiner(
    backbone: str,
    return_interm_indices,
    num_feature_levels: int,
    hidden_dim: int,
    train_backbone: bool = True,
    pretrained_backbone_path=None,
    temperature_h: float = 10000.0,
    temperature_w: float = 10000.0,
    *,
    pos_normalize_offset: float,
    resolution: Optional[int] = None,
) -> Joiner:
    """Trunk + sine position encoding. return_interm_indices: stages 0..3, plus 4 = one extra level
    built by input_proj; its length must equal num_feature_levels (the TAO rule).
    pos_normalize_offset: the network's sine-embedding convention (see position_encoding).
    resolution: the training input side for trunks whose weights depend on it (a ViT's position
    embeddings; TAO: dataset.augmentation.fixed_random_crop); None = the trunk's default."""
    indices = list(return_interm_indices)
    if len(indices) != num_feature_levels:
        raise ValueError(
            f"len(return_interm_indices)={len(indices)} ({indices}) must equal num_feature_levels={num_feature_levels}"
        )
    if sorted(set(indices)) != indices or any(i not in range(5) for i in indices):
        raise ValueError(f"return_interm_indices must be increasing values in 0..4, got {indices}")
    stages = [i for i in indices if i < 4]
    if not stages:
        raise ValueError(f"return_interm_indices needs at least one backbone stage (0..3), got {indices}")
    body = build_backbone_body(backbone, stages, train_backbone, pretrained_backbone_path, resolution=resolution)
    pos = PositionEmbeddingSine(
        hidden_dim // 2, temperature_h, temperature_w, normalize_offset=pos_normalize_offset, normalize=True
    )
    return Joiner(BackboneBase(body), pos)


def build_input_proj(backbone_channels: List[int], hidden_dim: int, num_feature_levels: int) -> nn.ModuleList:
    """One projection per feature level to hidden_dim channels (GroupNorm(32), so hidden_dim % 32 == 0)."""
    if hidden_dim % 32 != 0:
        raise ValueError(f"hidden_dim must be a multiple of 32 (GroupNorm(32, hidden_dim)), got {hidden_dim}")
    if num_feature_levels == 1:
        # single level: the last backbone stage, as in the references
        return nn.ModuleList(
            [nn.Sequential(nn.Conv2d(backbone_channels[-1], hidden_dim, 1), nn.GroupNorm(32, hidden_dim))]
        )
    projs = [nn.Sequential(nn.Conv2d(c, hidden_dim, 1), nn.GroupNorm(32, hidden_dim)) for c in backbone_channels]
    in_channels = backbone_channels[-1]
    for _ in range(num_feature_levels - len(backbone_channels)):
        projs.append(
            nn.Sequential(nn.Conv2d(in_channels, hidden_dim, 3, stride=2, padding=1), nn.GroupNorm(32, hidden_dim))
        )
        in_channels = hidden_dim
    for proj in projs:
        nn.init.xavier_uniform_(proj[0].weight, gain=1)
        nn.init.constant_(proj[0].bias, 0)
    return nn.ModuleList(projs)


def multiscale_features(joiner: Joiner, input_proj: nn.ModuleList, samples: torch.Tensor):
    """Network input -> (srcs, masks, pos) lists, one entry per feature level.

    Extra levels (beyond the backbone's) are computed by input_proj from the last backbone map
    (first extra) or the previous extra level; their mask is the input mask resized.
    """
    images, mask = split_inputs(samples)
    feats, pos = joiner(images, mask)
    srcs, masks = [], []
    for lvl, (f, m) in enumerate(feats):
        srcs.append(input_proj[lvl](f))
        masks.append(m)
    for lvl in range(len(feats), len(input_proj)):
        src = input_proj[lvl](feats[-1][0] if lvl == len(feats) else srcs[-1])
        m = resize_mask(mask, src.shape[-2:])
        srcs.append(src)
        masks.append(m)
        pos.append(joiner[1](m).to(src.dtype))
    return srcs, masks, pos
