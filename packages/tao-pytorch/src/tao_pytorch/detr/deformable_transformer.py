"""Deformable transformer (Deformable DETR) and the pieces DINO's transformer reuses.

All tensors are batch-first: (batch, tokens, channels). Module and parameter names follow
fundamentalvision/Deformable-DETR `models/deformable_transformer.py` (encoder.layers.i.self_attn,
decoder.layers.i.{cross_attn,self_attn,norm1..3,linear1,linear2}, level_embed, reference_points,
enc_output, enc_output_norm, pos_trans, pos_trans_norm); `nn.MultiheadAttention(batch_first=True)`
has the same parameter names as the sequence-first one the reference uses.
"""

import copy
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.box_ops import inverse_sigmoid
from tao_pytorch.detr.msda import MSDeformAttn


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (`layers.<i>` as in the references)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def _with_pos(x, pos):
    return x if pos is None else x + pos


# ----------------------------------------------------------------------------- input flattening


def flatten_levels(srcs, masks, pos_embeds, level_embed: Optional[torch.Tensor]):
    """Per-level maps -> concatenated tokens.

    returns src (B, S, C), mask (B, S), pos (B, S, C) (+ level_embed[lvl]), spatial_shapes
    [(H, W)] as python ints (static under tracing/export), level_start_index (L,) long tensor,
    valid_ratios (B, L, 2) = fraction (w, h) of each level that is not padding.
    """
    src_flat, mask_flat, pos_flat, shapes = [], [], [], []
    for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
        shapes.append((int(src.shape[-2]), int(src.shape[-1])))
        src_flat.append(src.flatten(2).transpose(1, 2))
        mask_flat.append(mask.flatten(1))
        pos = pos.flatten(2).transpose(1, 2)
        if level_embed is not None:
            pos = pos + level_embed[lvl].view(1, 1, -1)
        pos_flat.append(pos)
    starts, total = [], 0
    for h, w in shapes:
        starts.append(total)
        total += h * w
    level_start_index = torch.tensor(starts, dtype=torch.long, device=srcs[0].device)
    valid_ratios = torch.stack([valid_ratio(m) for m in masks], 1)
    return (
        torch.cat(src_flat, 1),
        torch.cat(mask_flat, 1),
        torch.cat(pos_flat, 1),
        shapes,
        level_start_index,
        valid_ratios,
    )


def valid_ratio(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) padding mask -> (B, 2) valid (w, h) fraction (padding is right / bottom)."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float()
    valid_w = (~mask[:, 0, :]).sum(1).float()
    return torch.stack([valid_w / w, valid_h / h], -1)


def check_enough_tokens(spatial_shapes: List[Tuple[int, int]], k: int) -> None:
    """Two-stage selects the top k encoder tokens: the image must give at least k of them."""
    n = sum(h * w for h, w in spatial_shapes)
    if n < k:
        raise ValueError(
            f"two-stage query selection needs at least num_queries={k} encoder tokens, but the feature "
            f"levels {spatial_shapes} give {n}: use a larger input or fewer queries"
        )


def encoder_output_proposals(memory: torch.Tensor, mask: torch.Tensor, spatial_shapes: List[Tuple[int, int]]):
    """One proposal box per encoder token (two-stage): centre = the token's pixel centre in the valid
    image, size 0.05 * 2**level. Returns (memory with padded / invalid tokens zeroed,
    proposals in inverse-sigmoid space with +inf where padded or too close to the border).
    """
    n = memory.shape[0]
    proposals, start = [], 0
    for lvl, (h, w) in enumerate(spatial_shapes):
        m = mask[:, start : start + h * w].view(n, h, w)
        valid_h = (~m[:, :, 0]).sum(1)
        valid_w = (~m[:, 0, :]).sum(1)
        ys = torch.arange(h, dtype=torch.float32, device=memory.device)
        xs = torch.arange(w, dtype=torch.float32, device=memory.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x, grid_y], -1)  # (h, w, 2)
        scale = torch.stack([valid_w, valid_h], -1).view(n, 1, 1, 2).float()
        grid = (grid[None] + 0.5) / scale
        wh = torch.ones_like(grid) * 0.05 * (2.0**lvl)
        proposals.append(torch.cat([grid, wh], -1).view(n, -1, 4))
        start += h * w
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    invalid = mask.unsqueeze(-1) | ~valid
    proposals = proposals.masked_fill(invalid, float("inf"))
    memory = memory.masked_fill(invalid, 0.0)
    return memory, proposals


# ----------------------------------------------------------------------------- encoder


class DeformableTransformerEncoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        src2 = self.self_attn(
            _with_pos(src, pos), reference_points, src, spatial_shapes, level_start_index, padding_mask
        )
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class DeformableTransformerEncoder(nn.Module):
    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = clones(encoder_layer, num_layers)
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(spatial_shapes, valid_ratios, device):
        """Pixel centres of every token, normalised by the valid size of its own level, then
        expressed for every level (B, S, L, 2) by multiplying with that level's valid ratio."""
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            ys = torch.arange(h, dtype=torch.float32, device=device) + 0.5
            xs = torch.arange(w, dtype=torch.float32, device=device) + 0.5
            ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(refs, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos=None, padding_mask=None):
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, src.device)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return out


# ----------------------------------------------------------------------------- decoder


class DeformableTransformerDecoderLayer(nn.Module):
    """Self-attention between queries, deformable cross-attention into the memory, FFN (post-norm).

    `self_attn_mask` (Lq, Lq) bool, True = may not attend: DINO uses it to keep denoising groups
    and matching queries apart.
    """

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt,
        query_pos,
        reference_points,
        src,
        spatial_shapes,
        level_start_index,
        src_padding_mask=None,
        self_attn_mask=None,
    ):
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(
            _with_pos(tgt, query_pos), reference_points, src, spatial_shapes, level_start_index, src_padding_mask
        )
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


def scale_reference_points(reference_points: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
    """(B, Lq, 2|4) points normalised to the valid image -> (B, Lq, L, 2|4) normalised to each padded level."""
    if reference_points.shape[-1] == 4:
        return reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableTransformerDecoder(nn.Module):
    """Deformable DETR decoder. With box refinement (`bbox_embed` set by the detector), each layer
    refines the reference boxes and the next layer samples around the refined (detached) ones."""

    def __init__(self, decoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.bbox_embed = None
        self.class_embed = None

    def forward(
        self,
        tgt,
        reference_points,
        src,
        spatial_shapes,
        level_start_index,
        valid_ratios,
        query_pos=None,
        src_padding_mask=None,
    ):
        out = tgt
        intermediate, intermediate_refs = [], []
        for lid, layer in enumerate(self.layers):
            ref_input = scale_reference_points(reference_points, valid_ratios)
            out = layer(out, query_pos, ref_input, src, spatial_shapes, level_start_index, src_padding_mask)
            if self.bbox_embed is not None:
                delta = self.bbox_embed[lid](out)
                if reference_points.shape[-1] == 4:
                    new_ref = delta + inverse_sigmoid(reference_points)
                else:
                    # 2-d points become boxes: xy refined, wh predicted from scratch
                    new_ref = torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1)
                reference_points = new_ref.sigmoid().detach()
            intermediate.append(out)
            intermediate_refs.append(reference_points)
        return torch.stack(intermediate), torch.stack(intermediate_refs)


# ----------------------------------------------------------------------------- transformer


class DeformableTransformer(nn.Module):
    """Deformable DETR's encoder-decoder; two_stage=True turns encoder tokens into proposals."""

    def __init__(
        self,
        d_model=256,
        nhead=8,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dim_feedforward=1024,
        dropout=0.1,
        num_feature_levels=4,
        dec_n_points=4,
        enc_n_points=4,
        two_stage=False,
        two_stage_num_proposals=300,
    ):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        self.two_stage = two_stage
        self.two_stage_num_proposals = two_stage_num_proposals
        enc_layer = DeformableTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = DeformableTransformerEncoder(enc_layer, num_encoder_layers)
        dec_layer = DeformableTransformerDecoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points
        )
        self.decoder = DeformableTransformerDecoder(dec_layer, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def proposal_pos_embed(self, proposals: torch.Tensor) -> torch.Tensor:
        """Sine embedding of (unsigmoided) proposal boxes: (B, K, 4) -> (B, K, 2 * d_model)."""
        num_feats = self.d_model // 2
        dim_t = torch.arange(num_feats, dtype=torch.float32, device=proposals.device)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
        pos = proposals.sigmoid() * (2 * math.pi)
        pos = pos[:, :, :, None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2)

    def forward(self, srcs, masks, pos_embeds, query_embed=None):
        """query_embed (num_queries, 2 * d_model) = [positional | content] halves (single stage).

        returns hs (n_dec, B, Q, C), init_reference (B, Q, 2|4), inter_references (n_dec, B, Q, 2|4),
        enc_outputs_class / enc_outputs_coord_unact (two-stage, else None)
        """
        if not self.two_stage and query_embed is None:
            raise ValueError("single-stage DeformableTransformer needs query_embed")
        src, mask, pos, shapes, level_start_index, valid_ratios = flatten_levels(
            srcs, masks, pos_embeds, self.level_embed
        )
        memory = self.encoder(src, shapes, level_start_index, valid_ratios, pos, mask)
        bs, _, c = memory.shape
        enc_class = enc_coord_unact = None
        if self.two_stage:
            check_enough_tokens(shapes, self.two_stage_num_proposals)
            out_memory, proposals = encoder_output_proposals(memory, mask, shapes)
            out_memory = self.enc_output_norm(self.enc_output(out_memory))
            # the extra (last) heads of the detector score / regress every encoder token
            enc_class = self.decoder.class_embed[self.decoder.num_layers](out_memory)
            enc_coord_unact = self.decoder.bbox_embed[self.decoder.num_layers](out_memory) + proposals
            topk = torch.topk(enc_class[..., 0], self.two_stage_num_proposals, dim=1)[1]
            topk_coords = torch.gather(enc_coord_unact, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
            reference_points = topk_coords.sigmoid()
            pos_trans = self.pos_trans_norm(self.pos_trans(self.proposal_pos_embed(topk_coords)))
            query_pos, tgt = torch.split(pos_trans, c, dim=2)
        else:
            query_pos, tgt = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(bs, -1, -1)
            tgt = tgt.unsqueeze(0).expand(bs, -1, -1)
            reference_points = self.reference_points(query_pos).sigmoid()
        init_reference = reference_points
        hs, inter_references = self.decoder(
            tgt, reference_points, memory, shapes, level_start_index, valid_ratios, query_pos, mask
        )
        return hs, init_reference, inter_references, enc_class, enc_coord_unact
