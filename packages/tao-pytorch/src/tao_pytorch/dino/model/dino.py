"""DINO detector (Zhang et al. 2022): DETR with improved deNoising anchOr boxes.

Parameter names follow IDEA-Research/DINO `models/dino/dino.py` (`backbone.0.body.*`,
`input_proj.<i>.{0,1}`, `transformer.*`, `label_enc`, `class_embed.<i>`, `bbox_embed.<i>.layers.<j>`,
`transformer.decoder.{class,bbox}_embed.<i>`, `transformer.enc_out_{class,bbox}_embed`), with
TAO's fixed choices: decoder heads shared across layers (dec_pred_*_embed_share=True), encoder
heads separate copies (two_stage_*_embed_share=False), label book size = num_classes.
"""

import copy
import math
from typing import Optional

import torch
from torch import nn

from tao_pytorch.detr.backbone import build_input_proj, build_joiner, multiscale_features
from tao_pytorch.detr.box_ops import inverse_sigmoid
from tao_pytorch.detr.deformable_transformer import MLP
from tao_pytorch.dino.model.dn_components import dn_post_process, prepare_for_cdn
from tao_pytorch.dino.model.transformer import DINO_EPS, DINOTransformer

# Sine position embedding: IDEA-Research/DINO and TAO's DINO normalise the plain valid-pixel count,
# cumsum / (n + eps) * 2pi, with no -0.5 centring (that is Deformable DETR's convention).
POS_NORMALIZE_OFFSET = 0.0


class DINO(nn.Module):
    def __init__(
        self,
        backbone,
        transformer: DINOTransformer,
        num_classes: int,
        num_queries: int,
        num_feature_levels: int,
        aux_loss: bool = True,
        use_dn: bool = True,
        dn_number: int = 100,
        dn_box_noise_scale: float = 1.0,
        dn_label_noise_ratio: float = 0.5,
    ):
        super().__init__()
        hidden_dim = transformer.d_model
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_feature_levels = num_feature_levels
        self.aux_loss = aux_loss
        self.use_dn = use_dn
        self.dn_number = dn_number if use_dn else 0
        self.dn_box_noise_scale = dn_box_noise_scale
        self.dn_label_noise_ratio = dn_label_noise_ratio
        self.transformer = transformer
        self.backbone = backbone
        # denoising label embedding; the extra row (index num_classes) is an unused "unknown" label
        self.label_enc = nn.Embedding(num_classes + 1, hidden_dim)
        self.input_proj = build_input_proj(backbone.num_channels, hidden_dim, num_feature_levels)

        class_embed = nn.Linear(hidden_dim, num_classes)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        n_dec = transformer.num_decoder_layers
        self.class_embed = nn.ModuleList([class_embed] * n_dec)
        self.bbox_embed = nn.ModuleList([bbox_embed] * n_dec)
        self.transformer.decoder.bbox_embed = self.bbox_embed
        self.transformer.decoder.class_embed = self.class_embed
        if transformer.two_stage_type == "standard":
            self.transformer.enc_out_bbox_embed = copy.deepcopy(bbox_embed)
            self.transformer.enc_out_class_embed = copy.deepcopy(class_embed)

    def forward(self, samples: torch.Tensor, targets=None):
        """samples (B, 4, H, W) image + padding mask channel, or (B, 3, H, W) unpadded; targets
        (training with denoising) list of {'labels', 'boxes' cxcywh}.

        returns {'pred_logits', 'pred_boxes', 'aux_outputs' (aux_loss), 'interm_outputs' and
        'interm_outputs_for_matching_pre' (two-stage), 'dn_meta' (None unless denoising)}.
        """
        srcs, masks, pos = multiscale_features(self.backbone, self.input_proj, samples)
        dn_tgt, dn_refpoints, attn_mask, dn_meta = prepare_for_cdn(
            targets,
            self.dn_number,
            self.dn_label_noise_ratio,
            self.dn_box_noise_scale,
            self.num_queries,
            self.num_classes,
            self.hidden_dim,
            self.label_enc,
            self.training,
        )
        hs, refs, hs_enc, ref_enc, init_box_proposal = self.transformer(
            srcs, masks, pos, dn_refpoints, dn_tgt, attn_mask
        )
        # keep label_enc in the graph when no denoising query was built (DDP: no unused parameters)
        hs[0] = hs[0] + self.label_enc.weight[0, 0] * 0.0
        # box of layer i = refinement of the (undetached) box layer i-1 produced: look forward twice
        coords = torch.stack(
            [
                (box_embed(h) + inverse_sigmoid(ref, DINO_EPS)).sigmoid()
                for ref, box_embed, h in zip(refs[:-1], self.bbox_embed, hs)
            ]
        )
        classes = torch.stack([cls_embed(h) for cls_embed, h in zip(self.class_embed, hs)])
        if dn_meta is not None:
            classes, coords = dn_post_process(classes, coords, dn_meta, self.aux_loss)
        out = {"pred_logits": classes[-1], "pred_boxes": coords[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": c, "pred_boxes": b} for c, b in zip(classes[:-1], coords[:-1])]
        if hs_enc is not None:
            interm_class = self.transformer.enc_out_class_embed(hs_enc[-1])
            out["interm_outputs"] = {"pred_logits": interm_class, "pred_boxes": ref_enc[-1]}
            out["interm_outputs_for_matching_pre"] = {"pred_logits": interm_class, "pred_boxes": init_box_proposal}
        out["dn_meta"] = dn_meta
        return out


def build_dino(model_cfg, num_classes: int, *, two_stage_type: str = "standard", embed_init_tgt: bool = True,
               backbone_resolution: Optional[int] = None) -> DINO:
    """DINO of a model spec section: a loaded spec's `cfg.model`, or tao-core's
    `DINOModelConfig(...)` from Python (its defaults are the TAO DINO table; nothing is
    defaulted here). num_select belongs to post-processing (`PostProcess(model_cfg.num_select)`).

    two_stage_type ("standard": encoder proposals; "no": learned query boxes) and embed_init_tgt
    are IDEA-Research/DINO options that TAO fixes at these values (its spec has no field for them).
    """
    m = model_cfg
    backbone = build_joiner(
        m.backbone,
        m.return_interm_indices,
        m.num_feature_levels,
        m.hidden_dim,
        train_backbone=m.train_backbone,
        pretrained_backbone_path=m.pretrained_backbone_path,
        temperature_h=m.pe_temperatureH,
        temperature_w=m.pe_temperatureW,
        pos_normalize_offset=POS_NORMALIZE_OFFSET,
        resolution=backbone_resolution,
    )
    transformer = DINOTransformer(
        d_model=m.hidden_dim,
        nhead=m.nheads,
        num_queries=m.num_queries,
        num_encoder_layers=m.enc_layers,
        num_decoder_layers=m.dec_layers,
        dim_feedforward=m.dim_feedforward,
        dropout=m.dropout_ratio,
        num_feature_levels=m.num_feature_levels,
        enc_n_points=m.enc_n_points,
        dec_n_points=m.dec_n_points,
        two_stage_type=two_stage_type,
        embed_init_tgt=embed_init_tgt,
        fix_refpoints_hw=m.fix_refpoints_hw,
    )
    return DINO(
        backbone,
        transformer,
        num_classes,
        m.num_queries,
        m.num_feature_levels,
        aux_loss=m.aux_loss,
        use_dn=m.use_dn,
        dn_number=m.dn_number,
        dn_box_noise_scale=m.dn_box_noise_scale,
        dn_label_noise_ratio=m.dn_label_noise_ratio,
    )
