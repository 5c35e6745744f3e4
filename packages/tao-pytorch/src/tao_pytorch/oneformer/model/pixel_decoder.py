"""OneFormer's pixel decoder: multi-scale deformable-attention encoder + FPN (Mask2Former's).

Contract (what the transformer decoder relies on):
    decoder = MSDeformAttnPixelDecoder(input_shape, head_cfg, decoder_cfg)
        input_shape: {feature name: (channels, stride)} of the backbone maps it may read
                     (e.g. D2SwinTransformer's out_channels / strides), filtered by
                     head_cfg.in_features; head_cfg: tao_core SemSegHeadConfig; decoder_cfg:
                     tao_core OneFormerDecoderConfig (nheads, dropout, num_feature_levels).
    out = decoder(features)          # features: {name: (B, C_name, H_name, W_name)}
    out.mask_features          (B, mask_dim, H / common_stride, W / common_stride)
    out.multi_scale_features   list of num_feature_levels maps (B, convs_dim, h, w), lowest resolution first
    out.transformer_encoder_features  the encoder's lowest-resolution map (= multi_scale_features[0])
    out.spatial_shapes / level_start_index  of the encoder levels (python (h, w) list / long tensor)
A NamedTuple, so `mask_features, multi_scale_features, *_ = decoder(features)` works too.

How (SHI-Labs/OneFormer `MSDeformAttnPixelDecoder`, itself Mask2Former's):
- the maps named in deformable_transformer_encoder_in_features (res3..res5) are projected to
  convs_dim by `input_proj.<i>` (1x1 conv + GroupNorm(32)), lowest resolution first, get a sine
  position embedding (`pe_layer`, normalised, no half-pixel offset) plus a learned per-level
  embedding (`transformer.level_embed`) and go through `transformer_enc_layers` deformable
  encoder layers (`transformer.encoder.layers.<i>`: tao_pytorch.detr's encoder layer, FFN 1024,
  4 points, decoder_cfg.nheads heads, decoder_cfg.dropout);
- the higher-resolution maps down to common_stride are added FPN-style: `adapter_<i>` (1x1 conv
  + norm) of the backbone map plus the bilinear upsampling of the previous level, then
  `layer_<i>` (3x3 conv + norm + ReLU); adapter_1 / layer_1 work on the highest resolution;
- `mask_features` (1x1 conv) maps the last (highest-resolution) level to mask_dim.
Parameter names are the reference's (under `sem_seg_head.pixel_decoder.` in its checkpoints).
The decoder runs in float32 under autocast (the deformable attention is not made for fp16).
"""

import math
from typing import Dict, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones import FrozenBatchNorm2d
from tao_pytorch.detr.deformable_transformer import (
    DeformableTransformerEncoder,
    DeformableTransformerEncoderLayer,
    flatten_levels,
)
from tao_pytorch.detr.msda import MSDeformAttn
from tao_pytorch.detr.position_encoding import PositionEmbeddingSine

# Fixed by the reference (not in its config): the encoder's FFN width and sampling points.
ENCODER_FFN_DIM = 1024
ENCODER_POINTS = 4
# SHI-Labs' sine embedding counts pixels from 1 (no half-pixel offset), temperature 10000.
PE_NORMALIZE_OFFSET = 0.0
PE_TEMPERATURE = 10000
GROUPS = 32  # GroupNorm groups of the input projections (and of norm "GN")


class PixelDecoderOutput(NamedTuple):
    mask_features: torch.Tensor
    multi_scale_features: List[torch.Tensor]
    transformer_encoder_features: torch.Tensor
    spatial_shapes: List[Tuple[int, int]]
    level_start_index: torch.Tensor


def conv_norm_layer(norm: str, channels: int) -> nn.Module:
    """detectron2's get_norm for the spec's choices ("" = no norm)."""
    if norm == "GN":
        return nn.GroupNorm(GROUPS, channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    raise ValueError(f"model.sem_seg_head.norm: unknown {norm!r}; expected GN, BN, SyncBN or FrozenBN")


class ConvNorm(nn.Conv2d):
    """Conv2d followed by an optional `norm` submodule and activation (detectron2's Conv2d, whose
    parameter names `<conv>.weight`, `<conv>.norm.weight` the checkpoints use)."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0, norm: str = "", relu: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=not norm)
        self.norm = conv_norm_layer(norm, out_channels) if norm else None
        self.relu = relu
        # detectron2's c2_xavier_fill
        nn.init.kaiming_uniform_(self.weight, a=1)
        if self.bias is not None:
            nn.init.constant_(self.bias, 0)

    def forward(self, x):
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class MSDeformAttnEncoderOnly(nn.Module):
    """The deformable encoder of the pixel decoder: `encoder.layers.<i>` and `level_embed`."""

    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float, levels: int):
        super().__init__()
        layer = DeformableTransformerEncoderLayer(d_model, dim_feedforward, dropout, levels, nhead, ENCODER_POINTS)
        self.encoder = DeformableTransformerEncoder(layer, num_layers)
        self.level_embed = nn.Parameter(torch.empty(levels, d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: List[torch.Tensor], pos_embeds: List[torch.Tensor]):
        masks = [torch.zeros((x.shape[0], x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device) for x in srcs]
        src, mask, pos, shapes, level_start_index, valid_ratios = flatten_levels(srcs, masks, pos_embeds, self.level_embed)
        memory = self.encoder(src, shapes, level_start_index, valid_ratios, pos, mask)
        return memory, shapes, level_start_index


def _check(input_shape, head, decoder) -> Tuple[List[str], List[str], int]:
    p = "model.sem_seg_head"
    enc = list(head.deformable_transformer_encoder_in_features)
    missing = [n for n in enc if n not in input_shape]
    if missing or not enc:
        raise ValueError(
            f"{p}.deformable_transformer_encoder_in_features {enc}: each must be one of the pixel decoder's inputs "
            f"{sorted(input_shape)} (model.sem_seg_head.in_features present in the backbone's outputs)"
        )
    if head.convs_dim % GROUPS:
        raise ValueError(f"{p}.convs_dim: {head.convs_dim} is not a multiple of {GROUPS} (GroupNorm groups)")
    if head.convs_dim % decoder.nheads:
        raise ValueError(f"model.one_former.nheads: {decoder.nheads} does not divide {p}.convs_dim {head.convs_dim}")
    by_stride = sorted(input_shape, key=lambda n: input_shape[n][1])
    enc_stride = min(input_shape[n][1] for n in enc)
    num_fpn = int(round(math.log2(enc_stride) - math.log2(head.common_stride)))
    fpn = by_stride[: max(num_fpn, 0)]
    want = [head.common_stride * 2**i for i in range(max(num_fpn, 0))]
    if num_fpn < 0 or [input_shape[n][1] for n in fpn] != want:
        raise ValueError(
            f"{p}.common_stride {head.common_stride}: the mask features need backbone maps of strides {want} "
            f"below the deformable encoder's smallest stride {enc_stride}, but {p}.in_features give "
            f"{ {n: input_shape[n][1] for n in by_stride} }: add them (e.g. res2 for stride 4) or raise common_stride"
        )
    levels = len(enc) + len(fpn)
    if not 1 <= decoder.num_feature_levels <= levels:
        raise ValueError(f"model.one_former.num_feature_levels: {decoder.num_feature_levels} not in 1..{levels}")
    return sorted(enc, key=lambda n: input_shape[n][1]), fpn, num_fpn


class MSDeformAttnPixelDecoder(nn.Module):
    """See the module docstring for the contract."""

    def __init__(self, input_shape: Dict[str, Tuple[int, int]], head, decoder):
        super().__init__()
        input_shape = {n: (int(c), int(s)) for n, (c, s) in input_shape.items() if n in head.in_features}
        enc, fpn, self.num_fpn_levels = _check(input_shape, head, decoder)
        conv_dim = head.convs_dim
        self.transformer_in_features = enc  # highest resolution first, as the reference stores them
        self.fpn_features = fpn
        self.num_feature_levels = decoder.num_feature_levels
        self.common_stride = head.common_stride
        # input projections from low to high resolution (res5 -> res3)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(input_shape[n][0], conv_dim, kernel_size=1), nn.GroupNorm(GROUPS, conv_dim))
            for n in enc[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = MSDeformAttnEncoderOnly(
            conv_dim, decoder.nheads, head.transformer_enc_layers, ENCODER_FFN_DIM, decoder.dropout, len(enc)
        )
        self.pe_layer = PositionEmbeddingSine(
            conv_dim // 2, PE_TEMPERATURE, PE_TEMPERATURE, normalize_offset=PE_NORMALIZE_OFFSET, normalize=True
        )
        self.mask_dim = head.mask_dim
        self.mask_features = ConvNorm(conv_dim, head.mask_dim, 1)
        lateral, output = [], []
        for i, name in enumerate(fpn):  # adapter_1 / layer_1: the highest resolution
            lat = ConvNorm(input_shape[name][0], conv_dim, 1, norm=head.norm)
            out = ConvNorm(conv_dim, conv_dim, 3, padding=1, norm=head.norm, relu=True)
            self.add_module(f"adapter_{i + 1}", lat)
            self.add_module(f"layer_{i + 1}", out)
            lateral.append(lat)
            output.append(out)
        # plain lists (not registered twice): top-down order, low to high resolution
        self.lateral_convs = lateral[::-1]
        self.output_convs = output[::-1]

    def forward(self, features: Dict[str, torch.Tensor]) -> PixelDecoderOutput:
        device_type = next(iter(features.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward(features)

    def _forward(self, features: Dict[str, torch.Tensor]) -> PixelDecoderOutput:
        srcs, pos = [], []
        for proj, name in zip(self.input_proj, self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(proj(x))
            pos.append(self.pe_layer(torch.zeros((x.shape[0], x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device)))
        memory, shapes, level_start_index = self.transformer(srcs, pos)
        b = memory.shape[0]
        out = [
            z.transpose(1, 2).reshape(b, -1, h, w)
            for z, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)
        ]
        for lat, conv, name in zip(self.lateral_convs, self.output_convs, self.fpn_features[::-1]):
            cur = lat(features[name].float())
            out.append(conv(cur + F.interpolate(out[-1], size=cur.shape[-2:], mode="bilinear", align_corners=False)))
        return PixelDecoderOutput(
            mask_features=self.mask_features(out[-1]),
            multi_scale_features=out[: self.num_feature_levels],
            transformer_encoder_features=out[0],
            spatial_shapes=shapes,
            level_start_index=level_start_index,
        )
