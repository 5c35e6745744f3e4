"""OneFormer's task-conditioned masked-attention transformer decoder (`ContrastiveMultiScaleMaskedTransformerDecoder`).

    decoder = ContrastiveMultiScaleMaskedTransformerDecoder(in_channels=256, mask_dim=256, num_classes=133, ...)
    out = decoder(multi_scale_features, mask_features, task_token)
    out["pred_logits"] [B, Q, C + 1], out["pred_masks"] [B, Q, H/4, W/4], out["aux_outputs"] (one per earlier layer),
    out["contrastive_logits"] [B, Q, hidden] (training only)

What it computes (SHI-Labs/OneFormer):
1. Queries. A small DETR-style transformer (`class_transformer`, class_dec_layers layers) decodes
   Q - 1 object queries: its targets all start as the (LayerNorm-ed) task token, its query
   positions are the first Q - 1 rows of `query_embed`, and it attends over the mask features
   (as in the reference, the sine encoding of the mask features is the memory and the 1x1
   projection `class_input_proj` of the mask features its positional term). The task token is
   appended as query Q. These Q queries are also what the contrastive loss compares with the
   text queries (`contrastive_logits`).
2. Masked attention. dec_layers - 1 layers, each: cross-attention to one level of the pixel
   decoder's multi-scale features (coarsest first, round-robin), where a query only sees the
   pixels its previous mask predicts (sigmoid >= 0.5 at that level's resolution; a query whose
   mask is empty sees everything), then self-attention, then an FFN (post-norm unless pre_norm).
3. Heads. After the query transformer and after every layer: `decoder_norm`, then `class_embed`
   (C + 1 logits, the last is "no object") and `mask_embed` (3-layer MLP) dotted with the mask
   features. Every layer's predictions are returned for deep supervision.

Parameter names follow the reference (`sem_seg_head.predictor.` in a full checkpoint).
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.deformable_transformer import MLP
from tao_pytorch.detr.position_encoding import PositionEmbeddingSine

NUM_FEATURE_LEVELS = 3  # the reference decoder attends to three pixel-decoder levels


def _with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _c2_xavier(conv: nn.Conv2d) -> nn.Conv2d:
    # detectron2's c2_xavier_fill: kaiming-uniform with a = 1, zero bias
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.zeros_(conv.bias)
    return conv


class SelfAttentionLayer(nn.Module):
    """Query self-attention with the query positions added to queries and keys (`self_attn`, `norm`)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.norm(tgt) if self.normalize_before else tgt
        q = k = _with_pos(h, query_pos)
        tgt = tgt + self.dropout(self.self_attn(q, k, value=h)[0])
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a flattened feature map (`multihead_attn`, `norm`); memory_mask True = blocked."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt, memory, memory_mask=None, pos=None, query_pos=None) -> torch.Tensor:
        h = self.norm(tgt) if self.normalize_before else tgt
        attended = self.multihead_attn(
            query=_with_pos(h, query_pos), key=_with_pos(memory, pos), value=memory, attn_mask=memory_mask
        )[0]
        tgt = tgt + self.dropout(attended)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Linear-ReLU-Linear with a residual (`linear1`, `linear2`, `norm`)."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        h = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(h)))))
        return tgt if self.normalize_before else self.norm(tgt)


class QueryEncoderLayer(nn.Module):
    """DETR encoder layer of the query transformer (used only when one_former.enc_layers > 0)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        pre = self.normalize_before
        h = self.norm1(src) if pre else src
        q = k = h + pos
        src = src + self.dropout1(self.self_attn(q, k, value=h)[0])
        if not pre:
            src = self.norm1(src)
        h = self.norm2(src) if pre else src
        src = src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(h)))))
        return src if pre else self.norm2(src)


class QueryDecoderLayer(nn.Module):
    """DETR decoder layer: self-attention, cross-attention to the memory, FFN (`norm1..3`)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def forward(self, tgt, memory, pos, query_pos) -> torch.Tensor:
        pre = self.normalize_before
        h = self.norm1(tgt) if pre else tgt
        q = k = h + query_pos
        tgt = tgt + self.dropout1(self.self_attn(q, k, value=h)[0])
        if not pre:
            tgt = self.norm1(tgt)
        h = self.norm2(tgt) if pre else tgt
        tgt = tgt + self.dropout2(self.multihead_attn(query=h + query_pos, key=memory + pos, value=memory)[0])
        if not pre:
            tgt = self.norm2(tgt)
        h = self.norm3(tgt) if pre else tgt
        tgt = tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(h)))))
        return tgt if pre else self.norm3(tgt)


class _LayerStack(nn.Module):
    """`layers.<i>` plus an optional final `norm` (the reference's TransformerEncoder / TransformerDecoder)."""

    def __init__(self, layers: List[nn.Module], norm: Optional[nn.LayerNorm]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm


class QueryTransformer(nn.Module):
    """The `class_transformer`: decodes object queries from the task token over the mask features.

    forward(src [B, C, H, W], query_pos [Q, C], pos [B, C, H, W], task_token [1, B, C] | None) -> [Q, B, C].
    """

    def __init__(self, d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, normalize_before):
        super().__init__()
        enc = [QueryEncoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before) for _ in range(num_encoder_layers)]
        self.encoder = _LayerStack(enc, nn.LayerNorm(d_model) if normalize_before else None)
        dec = [QueryDecoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before) for _ in range(num_decoder_layers)]
        self.decoder = _LayerStack(dec, nn.LayerNorm(d_model))
        _xavier_matrices(self)

    def forward(self, src, query_pos, pos, task_token=None) -> torch.Tensor:
        batch = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = query_pos.unsqueeze(1).expand(-1, batch, -1)
        if task_token is None:
            tgt = torch.zeros_like(query_pos)
        else:
            tgt = task_token.expand(query_pos.shape[0], -1, -1)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos)
        if self.encoder.norm is not None:
            memory = self.encoder.norm(memory)
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, pos, query_pos)
        return self.decoder.norm(tgt)


class ContrastiveMultiScaleMaskedTransformerDecoder(nn.Module):
    """See the module docstring. dec_layers counts the query-transformer stage too (as the spec's field):
    the masked-attention stack has dec_layers - 1 layers."""

    def __init__(
        self,
        *,
        in_channels: int,
        mask_dim: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 150,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        enc_layers: int = 0,
        dec_layers: int = 10,
        class_dec_layers: int = 2,
        pre_norm: bool = False,
        enforce_input_project: bool = False,
        use_task_norm: bool = True,
        num_feature_levels: int = NUM_FEATURE_LEVELS,
    ):
        super().__init__()
        if dec_layers < 1:
            raise ValueError(f"model.one_former.dec_layers must be >= 1, got {dec_layers}")
        if hidden_dim % 2 or hidden_dim % nheads:
            raise ValueError(
                f"model.one_former.hidden_dim ({hidden_dim}) must be even and divisible by nheads ({nheads})"
            )
        self.num_heads = nheads
        self.num_layers = dec_layers - 1
        self.num_queries = num_queries
        self.use_task_norm = use_task_norm
        self.num_feature_levels = num_feature_levels
        # Mask2Former's sine encoding: plain counts normalised to (0, 2 pi], temperature 10000
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, 10000, 10000, normalize_offset=0.0)
        self.class_transformer = QueryTransformer(
            hidden_dim, nheads, enc_layers, class_dec_layers, dim_feedforward, dropout, pre_norm
        )
        # the masked-attention layers run without dropout, as in the reference
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(self.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(self.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, 0.0, pre_norm) for _ in range(self.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList(
            _c2_xavier(nn.Conv2d(in_channels, hidden_dim, 1))
            if in_channels != hidden_dim or enforce_input_project
            else nn.Sequential()
            for _ in range(self.num_feature_levels)
        )
        # the reference sizes this by the pixel decoder's channels and applies it to the mask features;
        # the two are equal in every reference config, and mask_dim is what it actually reads
        self.class_input_proj = _c2_xavier(nn.Conv2d(mask_dim, hidden_dim, 1))
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def _sine(self, x: torch.Tensor) -> torch.Tensor:
        no_padding = torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.bool, device=x.device)
        return self.pe_layer(no_padding).to(x.dtype)

    def forward(
        self, multi_scale_features: List[torch.Tensor], mask_features: torch.Tensor, task_token: torch.Tensor
    ) -> Dict[str, object]:
        """multi_scale_features: 3 maps [B, in_channels, h_l, w_l] (coarsest first); mask_features
        [B, mask_dim, H, W]; task_token [B, hidden] (the task MLP's output)."""
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(
                f"the decoder attends to {self.num_feature_levels} feature levels, got {len(multi_scale_features)}"
            )
        src, pos, sizes = [], [], []
        for level, feature in enumerate(multi_scale_features):
            sizes.append(feature.shape[-2:])
            pos.append(self._sine(feature).flatten(2).permute(2, 0, 1))
            projected = self.input_proj[level](feature).flatten(2) + self.level_embed.weight[level][None, :, None]
            src.append(projected.permute(2, 0, 1))
        batch = src[0].shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, batch, -1)

        task = task_token.unsqueeze(0)
        if self.use_task_norm:
            task = self.decoder_norm(task)
        object_queries = self.class_transformer(
            self._sine(mask_features),
            self.query_embed.weight[:-1],
            self.class_input_proj(mask_features),
            task if self.use_task_norm else None,
        )
        queries = torch.cat([object_queries, task], dim=0)  # [Q, B, C]

        output = queries
        classes, masks = [], []
        logits, mask, attn_mask = self._heads(output, mask_features, sizes[0])
        classes.append(logits)
        masks.append(mask)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose predicted mask is empty at this level attends everywhere
            attn_mask = attn_mask & ~attn_mask.all(dim=-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, pos=pos[level], query_pos=query_pos
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            logits, mask, attn_mask = self._heads(output, mask_features, sizes[(i + 1) % self.num_feature_levels])
            classes.append(logits)
            masks.append(mask)

        out: Dict[str, object] = {
            "pred_logits": classes[-1],
            "pred_masks": masks[-1],
            "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in zip(classes[:-1], masks[:-1])],
        }
        if self.training:
            out["contrastive_logits"] = queries.transpose(0, 1)
        return out

    def _heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_size):
        """Class logits [B, Q, C+1], mask logits [B, Q, H, W] and the next layer's attention mask
        [B * heads, Q, h * w] (True = blocked: sigmoid < 0.5 at the next level's resolution)."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        logits = self.class_embed(decoded)
        mask = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        resized = F.interpolate(mask, size=attn_size, mode="bilinear", align_corners=False)
        blocked = resized.sigmoid().flatten(2) < 0.5
        attn_mask = blocked.unsqueeze(1).expand(-1, self.num_heads, -1, -1).flatten(0, 1).detach()
        return logits, mask, attn_mask


def build_transformer_decoder(one_former_cfg, sem_seg_head_cfg) -> ContrastiveMultiScaleMaskedTransformerDecoder:
    """The decoder of tao_core's OneFormerDecoderConfig (model.one_former) and SemSegHeadConfig (model.sem_seg_head)."""
    c = one_former_cfg
    return ContrastiveMultiScaleMaskedTransformerDecoder(
        in_channels=sem_seg_head_cfg.convs_dim,
        mask_dim=sem_seg_head_cfg.mask_dim,
        num_classes=sem_seg_head_cfg.num_classes,
        hidden_dim=c.hidden_dim,
        num_queries=c.num_object_queries,
        nheads=c.nheads,
        dim_feedforward=c.dim_feedforward,
        dropout=c.dropout,
        enc_layers=c.enc_layers,
        dec_layers=c.dec_layers,
        class_dec_layers=c.class_dec_layers,
        pre_norm=c.pre_norm,
        enforce_input_project=c.enforce_input_proj,
        use_task_norm=c.use_task_norm,
        num_feature_levels=c.num_feature_levels,
    )

