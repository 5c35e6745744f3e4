"""Deformable DETR detector (Zhu et al. 2021): backbone -> input_proj -> deformable transformer -> heads.

Parameter names follow fundamentalvision/Deformable-DETR `models/deformable_detr.py`
(`backbone.0.body.*`, `input_proj.<i>.{0,1}`, `transformer.*`, `query_embed`, `class_embed.<i>`,
`bbox_embed.<i>.layers.<j>`; with box refinement also `transformer.decoder.bbox_embed.*`, with
two-stage `transformer.decoder.class_embed.*`), so its checkpoints load with strict=True.
TAO's Deformable DETR has no two-stage option; it is kept here because the reference has it.
"""

import copy
import math
from typing import Optional

import torch
from torch import nn

from tao_pytorch.detr.backbone import build_input_proj, build_joiner, multiscale_features
from tao_pytorch.detr.box_ops import inverse_sigmoid
from tao_pytorch.detr.deformable_transformer import MLP, DeformableTransformer

# Sine position embedding: fundamentalvision/Deformable-DETR centres each pixel before normalising,
# (cumsum - 0.5) / (n + eps) * 2pi (DINO does not subtract the 0.5).
POS_NORMALIZE_OFFSET = 0.5


class DeformableDETR(nn.Module):
    def __init__(
        self,
        backbone,
        transformer: DeformableTransformer,
        num_classes: int,
        num_queries: int,
        num_feature_levels: int,
        aux_loss: bool = True,
        with_box_refine: bool = False,
        two_stage: bool = False,
    ):
        super().__init__()
        if two_stage and not with_box_refine:
            # the reference scores encoder proposals with the extra refinement heads
            raise ValueError("two_stage Deformable DETR requires with_box_refine=True (as in the reference)")
        hidden_dim = transformer.d_model
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.num_feature_levels = num_feature_levels
        self.aux_loss = aux_loss
        self.with_box_refine = with_box_refine
        self.two_stage = two_stage
        self.transformer = transformer
        self.backbone = backbone
        self.input_proj = build_input_proj(backbone.num_channels, hidden_dim, num_feature_levels)
        if not two_stage:
            # [positional | content] halves per query
            self.query_embed = nn.Embedding(num_queries, hidden_dim * 2)

        class_embed = nn.Linear(hidden_dim, num_classes)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        # prior 0.01 for every class: the focal loss starts near the background solution
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        # one head per decoder layer (+1 for the encoder proposals in two-stage)
        num_pred = transformer.decoder.num_layers + (1 if two_stage else 0)
        if with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            # refined boxes start at the reference point with size sigmoid(-2) ~ 0.12
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            self.transformer.decoder.bbox_embed = self.bbox_embed
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            # shared heads, listed once per layer so the state dict keys match the reference
            self.class_embed = nn.ModuleList([class_embed] * num_pred)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
            self.transformer.decoder.bbox_embed = None
        if two_stage:
            self.transformer.decoder.class_embed = self.class_embed
            for box_embed in self.bbox_embed:
                nn.init.constant_(box_embed.layers[-1].bias[2:], 0.0)

    def forward(self, samples: torch.Tensor, targets=None):
        """samples (B, 4, H, W) image + padding mask channel, or (B, 3, H, W) unpadded.

        returns {'pred_logits' (B, Q, K), 'pred_boxes' (B, Q, 4) cxcywh in [0, 1],
                 'aux_outputs': [...] per earlier decoder layer (aux_loss),
                 'enc_outputs': encoder proposals (two_stage)}. `targets` is unused (API parity with DINO).
        """
        del targets
        srcs, masks, pos = multiscale_features(self.backbone, self.input_proj, samples)
        query_embeds = None if self.two_stage else self.query_embed.weight
        hs, init_ref, inter_refs, enc_class, enc_coord_unact = self.transformer(srcs, masks, pos, query_embeds)
        classes, coords = [], []
        for lvl in range(hs.shape[0]):
            reference = inverse_sigmoid(init_ref if lvl == 0 else inter_refs[lvl - 1])
            delta = self.bbox_embed[lvl](hs[lvl])
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            classes.append(self.class_embed[lvl](hs[lvl]))
            coords.append(coord.sigmoid())
        out = {"pred_logits": classes[-1], "pred_boxes": coords[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": c, "pred_boxes": b} for c, b in zip(classes[:-1], coords[:-1])]
        if self.two_stage:
            out["enc_outputs"] = {"pred_logits": enc_class, "pred_boxes": enc_coord_unact.sigmoid()}
        return out


def build_deformable_detr(model_cfg, num_classes: int, *, two_stage: bool = False,
                          backbone_resolution: Optional[int] = None) -> DeformableDETR:
    """Deformable DETR of a model spec section: a loaded spec's `cfg.model`, or tao-core's
    `DDETRModelConfig(...)` from Python (its defaults are the TAO Deformable DETR table; nothing
    is defaulted here).

    two_stage (encoder proposals as queries; needs with_box_refine) is the reference's option;
    TAO's Deformable DETR has no such field, so the tasks always build it off.
    """
    m = model_cfg
    backbone = build_joiner(
        m.backbone,
        m.return_interm_indices,
        m.num_feature_levels,
        m.hidden_dim,
        train_backbone=m.train_backbone,
        pretrained_backbone_path=m.pretrained_backbone_path,
        pos_normalize_offset=POS_NORMALIZE_OFFSET,
        resolution=backbone_resolution,
    )
    transformer = DeformableTransformer(
        d_model=m.hidden_dim,
        nhead=m.nheads,
        num_encoder_layers=m.enc_layers,
        num_decoder_layers=m.dec_layers,
        dim_feedforward=m.dim_feedforward,
        dropout=m.dropout_ratio,
        num_feature_levels=m.num_feature_levels,
        dec_n_points=m.dec_n_points,
        enc_n_points=m.enc_n_points,
        two_stage=two_stage,
        two_stage_num_proposals=m.num_queries,
    )
    return DeformableDETR(
        backbone,
        transformer,
        num_classes,
        m.num_queries,
        m.num_feature_levels,
        aux_loss=m.aux_loss,
        with_box_refine=m.with_box_refine,
        two_stage=two_stage,
    )
