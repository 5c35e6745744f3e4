"""DINO's deformable transformer (IDEA-Research/DINO `models/dino/deformable_transformer.py`).

Differences from Deformable DETR's (whose encoder and decoder layers are reused as is):
  * queries are 4-d anchor boxes; the decoder turns each box into a sine embedding and an MLP
    (`decoder.ref_point_head`) into the query's positional part (conditional / DAB queries);
  * mixed query selection ("standard" two-stage): the encoder scores every token
    (`enc_out_class_embed`, `enc_out_bbox_embed` on `enc_output` + `enc_output_norm`), the top
    num_queries tokens give the initial anchor boxes, the content part comes from a learned
    `tgt_embed` (embed_init_tgt);
  * look forward twice: each decoder layer refines the boxes; the next layer samples around the
    detached box, but the box prediction of layer i+1 is built on the undetached box of layer i,
    so its loss also trains layer i's refinement;
  * an attention mask separates the denoising queries (see dn_components).
Parameter names match the reference (`level_embed`, `tgt_embed`, `enc_output`, `enc_output_norm`,
`enc_out_class_embed`, `enc_out_bbox_embed`, `decoder.layers`, `decoder.norm`,
`decoder.ref_point_head`, `refpoint_embed` for two_stage_type 'no').
"""

import math

import torch
from torch import nn

from tao_pytorch.detr.box_ops import inverse_sigmoid
from tao_pytorch.detr.deformable_transformer import (
    MLP,
    DeformableTransformerDecoderLayer,
    DeformableTransformerEncoder,
    DeformableTransformerEncoderLayer,
    check_enough_tokens,
    clones,
    encoder_output_proposals,
    flatten_levels,
    scale_reference_points,
)
from tao_pytorch.detr.msda import MSDeformAttn

# IDEA DINO's inverse_sigmoid eps (Deformable DETR uses 1e-5).
DINO_EPS = 1e-3


def sine_embed_boxes(boxes: torch.Tensor, d_model: int) -> torch.Tensor:
    """(..., 4) cxcywh in [0, 1] -> (..., 2 * d_model) = sine embeddings of [y, x, w, h], d_model/2 each."""
    num_feats = d_model // 2
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def embed(v):
        p = (v * (2 * math.pi))[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    x, y, w, h = boxes.unbind(-1)
    return torch.cat([embed(y), embed(x), embed(w), embed(h)], dim=-1)


class DINODecoder(nn.Module):
    def __init__(self, decoder_layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.bbox_embed = None  # set by the detector (shared with its heads)
        self.class_embed = None

    def forward(
        self,
        tgt,
        memory,
        memory_padding_mask,
        refpoints_unsigmoid,
        spatial_shapes,
        level_start_index,
        valid_ratios,
        self_attn_mask=None,
    ):
        """returns hs: list of (B, Q, C) normalised outputs per layer, refs: list of (B, Q, 4) boxes,
        refs[0] the initial boxes and refs[i+1] the (undetached) boxes refined by layer i."""
        out = tgt
        reference_points = refpoints_unsigmoid.sigmoid()
        refs = [reference_points]
        hs = []
        for lid, layer in enumerate(self.layers):
            ref_input = scale_reference_points(reference_points, valid_ratios)
            query_pos = self.ref_point_head(sine_embed_boxes(ref_input[:, :, 0, :], self.d_model))
            out = layer(
                out,
                query_pos,
                ref_input,
                memory,
                spatial_shapes,
                level_start_index,
                memory_padding_mask,
                self_attn_mask,
            )
            if self.bbox_embed is not None:
                # as the reference: the refinement uses the un-normalised output
                new_ref = (self.bbox_embed[lid](out) + inverse_sigmoid(reference_points, DINO_EPS)).sigmoid()
                reference_points = new_ref.detach()
                refs.append(new_ref)
            hs.append(self.norm(out))
        return hs, refs


class DINOTransformer(nn.Module):
    def __init__(
        self,
        d_model=256,
        nhead=8,
        num_queries=900,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dim_feedforward=2048,
        dropout=0.0,
        num_feature_levels=4,
        enc_n_points=4,
        dec_n_points=4,
        two_stage_type="standard",
        embed_init_tgt=True,
        fix_refpoints_hw=-1,
    ):
        super().__init__()
        if two_stage_type not in ("standard", "no"):
            raise ValueError(f"two_stage_type must be 'standard' or 'no', got {two_stage_type!r}")
        self.d_model = d_model
        self.nhead = nhead
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels
        self.num_decoder_layers = num_decoder_layers
        self.two_stage_type = two_stage_type
        self.embed_init_tgt = embed_init_tgt
        self.fix_refpoints_hw = fix_refpoints_hw
        enc_layer = DeformableTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = DeformableTransformerEncoder(enc_layer, num_encoder_layers)
        dec_layer = DeformableTransformerDecoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points
        )
        self.decoder = DINODecoder(dec_layer, num_decoder_layers, d_model)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model)) if num_feature_levels > 1 else None
        self.tgt_embed = nn.Embedding(num_queries, d_model) if (embed_init_tgt or two_stage_type == "no") else None
        if two_stage_type == "standard":
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
        self.enc_out_class_embed = None  # set by the detector
        self.enc_out_bbox_embed = None
        self._reset_parameters()
        if two_stage_type == "no":
            self._init_ref_points(num_queries)

    def _reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        if self.level_embed is not None:
            nn.init.normal_(self.level_embed)

    def _init_ref_points(self, n: int):
        """Learned anchors for two_stage_type 'no'. fix_refpoints_hw: -1 learn (w, h) per query;
        > 0 every anchor has that fixed (w, h); -2 one learned (w, h) shared by all anchors."""
        if self.fix_refpoints_hw == -1:
            self.refpoint_embed = nn.Embedding(n, 4)
        elif self.fix_refpoints_hw == -2:
            self.refpoint_embed = nn.Embedding(n, 2)
            self.hw_embed = nn.Embedding(1, 1)
        elif self.fix_refpoints_hw > 0:
            self.refpoint_embed = nn.Embedding(n, 2)
            self.register_buffer("fixed_hw", inverse_sigmoid(torch.full((2,), float(self.fix_refpoints_hw)), DINO_EPS))
        else:
            raise ValueError(f"fix_refpoints_hw must be -1, -2 or > 0, got {self.fix_refpoints_hw}")

    def _learned_anchors(self, bs: int) -> torch.Tensor:
        xy = self.refpoint_embed.weight
        if self.fix_refpoints_hw == -1:
            boxes = xy
        elif self.fix_refpoints_hw == -2:
            boxes = torch.cat([xy, self.hw_embed.weight.expand(xy.shape[0], 2)], -1)
        else:
            boxes = torch.cat([xy, self.fixed_hw.expand(xy.shape[0], 2)], -1)
        return boxes.unsqueeze(0).expand(bs, -1, -1)

    def forward(self, srcs, masks, pos_embeds, dn_refpoints=None, dn_tgt=None, attn_mask=None):
        """dn_refpoints (B, pad, 4) unsigmoided / dn_tgt (B, pad, C): denoising queries put in front.

        returns hs (list per layer), refs (list, len = layers + 1), hs_enc / ref_enc (1, B, Q, ...)
        encoder proposals for the interm loss (or None), init_box_proposal (B, Q, 4) (or None).
        """
        src, mask, pos, shapes, level_start_index, valid_ratios = flatten_levels(
            srcs, masks, pos_embeds, self.level_embed
        )
        memory = self.encoder(src, shapes, level_start_index, valid_ratios, pos, mask)
        bs = memory.shape[0]
        hs_enc = ref_enc = init_box_proposal = None
        if self.two_stage_type == "standard":
            check_enough_tokens(shapes, self.num_queries)
            out_memory, proposals = encoder_output_proposals(memory, mask, shapes)
            out_memory = self.enc_output_norm(self.enc_output(out_memory))
            enc_class = self.enc_out_class_embed(out_memory)
            enc_coord_unact = self.enc_out_bbox_embed(out_memory) + proposals
            topk = torch.topk(enc_class.max(-1)[0], self.num_queries, dim=1)[1]
            refpoints_undetached = torch.gather(enc_coord_unact, 1, topk.unsqueeze(-1).repeat(1, 1, 4))
            refpoints = refpoints_undetached.detach()
            init_box_proposal = torch.gather(proposals, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).sigmoid()
            tgt_undetached = torch.gather(out_memory, 1, topk.unsqueeze(-1).repeat(1, 1, self.d_model))
            if self.embed_init_tgt:
                tgt = self.tgt_embed.weight.unsqueeze(0).expand(bs, -1, -1)
            else:
                tgt = tgt_undetached.detach()
            hs_enc = tgt_undetached.unsqueeze(0)
            ref_enc = refpoints_undetached.sigmoid().unsqueeze(0)
        else:
            tgt = self.tgt_embed.weight.unsqueeze(0).expand(bs, -1, -1)
            refpoints = self._learned_anchors(bs)
        if dn_refpoints is not None:
            refpoints = torch.cat([dn_refpoints, refpoints], 1)
            tgt = torch.cat([dn_tgt, tgt], 1)
        hs, refs = self.decoder(tgt, memory, mask, refpoints, shapes, level_start_index, valid_ratios, attn_mask)
        return hs, refs, hs_enc, ref_enc, init_box_proposal
