"""OneFormer's text branch: a CLIP-style text transformer, its projector and the learnable prompt context.

Used in training only: the class texts of an image ("a photo with a car", ...) become text
queries that the contrastive loss pulls towards the decoder's object queries. Inference never
runs it (the task token goes through `task_mlp`, an MLP on the raw token ids).

    encoder = TextTransformer(context_length=77, width=256, layers=6, vocab_size=49408)
    queries = encode_text_queries(encoder, projector, prompt_ctx, ids)   # ids [B, T, 77] -> [B, T + n_ctx, hidden]

Module and parameter names are those of SHI-Labs/OneFormer (`text_encoder.token_embedding`,
`text_encoder.positional_embedding`, `text_encoder.transformer.resblocks.<i>.{attn, ln_1, mlp.c_fc,
mlp.c_proj, ln_2}`, `text_encoder.ln_final`, `text_projector.layers.<i>`, `prompt_ctx`), so their
checkpoints load. As in the reference the number of heads is width // 64, attention is causal
(a token sees itself and the tokens before it) and the text feature is the final-normalised state
at the end-of-text token, found as the position of the largest id (EOT = 49407 is the largest).
"""

from collections import OrderedDict
from typing import Optional

import torch
import torch.utils.checkpoint
from torch import nn

from tao_pytorch.detr.deformable_transformer import MLP

HEAD_WIDTH = 64  # the reference derives the head count from the width


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation CLIP's text transformer was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); sequence-first tensors [L, N, C]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, width * 4), gelu=QuickGELU(), c_proj=nn.Linear(width * 4, width))
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=causal_mask)[0]
        return x + self.mlp(self.ln_2(x))


class TextTransformerLayers(nn.Module):
    """The stack of blocks (`resblocks.<i>`), optionally recomputed in backward to save memory."""

    def __init__(self, width: int, layers: int, heads: int, use_checkpoint: bool = False):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            if self.use_checkpoint and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(block, x, causal_mask, use_reentrant=False)
            else:
                x = block(x, causal_mask)
        return x


class TextTransformer(nn.Module):
    """Token ids [N, context_length] -> text features [N, width] (taken at each text's EOT token)."""

    def __init__(self, context_length: int, width: int, layers: int, vocab_size: int, use_checkpoint: bool = False):
        super().__init__()
        if width < HEAD_WIDTH:
            raise ValueError(f"model.text_encoder.width must be >= {HEAD_WIDTH} (heads = width // {HEAD_WIDTH}), got {width}")
        self.context_length = context_length
        self.width = width
        self.transformer = TextTransformerLayers(width, layers, width // HEAD_WIDTH, use_checkpoint)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.token_embedding = nn.Embedding(vocab_size, width)
        # additive mask, -inf above the diagonal; not saved (the reference keeps it out of the state dict)
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", causal, persistent=False)
        self._init_weights(layers)

    def _init_weights(self, layers: int) -> None:
        # CLIP's initialisation (the reference uses it when training from scratch)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = self.width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=self.width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * self.width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[-1] != self.context_length:
            raise ValueError(f"text ids have length {ids.shape[-1]}; the text encoder expects {self.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.transformer(x.transpose(0, 1), self.causal_mask.to(x.dtype)).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]


def build_text_branch(text_cfg, hidden_dim: int, use_checkpoint: bool = False):
    """(text_encoder, text_projector, prompt_ctx) of a tao_core TextEncoderConfig; prompt_ctx is None when n_ctx = 0."""
    encoder = TextTransformer(
        text_cfg.context_length, text_cfg.width, text_cfg.num_layers, text_cfg.vocab_size, use_checkpoint
    )
    projector = MLP(text_cfg.width, hidden_dim, hidden_dim, text_cfg.proj_num_layers)
    if text_cfg.n_ctx > 0 and text_cfg.width != hidden_dim:
        # the context vectors are appended to the projected texts, so they must share the width
        raise ValueError(
            f"model.text_encoder.width ({text_cfg.width}) must equal model.one_former.hidden_dim ({hidden_dim}) "
            f"when model.text_encoder.n_ctx > 0 (got n_ctx {text_cfg.n_ctx})"
        )
    prompt_ctx = nn.Embedding(text_cfg.n_ctx, text_cfg.width) if text_cfg.n_ctx > 0 else None
    return encoder, projector, prompt_ctx


def encode_text_queries(
    encoder: TextTransformer, projector: nn.Module, prompt_ctx: Optional[nn.Embedding], ids: torch.Tensor
) -> torch.Tensor:
    """Text queries of token ids.

    ids [B, T, L] (T class texts per image) -> [B, T + n_ctx, hidden]: the projected texts followed by
    the learnable context vectors; ids [N, L] -> [N, hidden] (no context appended), as in the reference.
    """
    if ids.ndim not in (2, 3):
        raise ValueError(f"text ids must be [N, L] or [B, T, L], got shape {tuple(ids.shape)}")
    batched = ids.ndim == 3
    flat = ids.flatten(0, 1) if batched else ids
    queries = projector(encoder(flat))
    if not batched:
        return queries
    queries = queries.view(ids.shape[0], ids.shape[1], -1)
    if prompt_ctx is not None:
        queries = torch.cat([queries, prompt_ctx.weight.unsqueeze(0).expand(ids.shape[0], -1, -1)], dim=1)
    return queries
