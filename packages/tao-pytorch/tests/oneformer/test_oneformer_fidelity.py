"""OneFormer against transformers' independent implementation (OneFormerForUniversalSegmentation, transformers 5.18).

Each test builds transformers' module at a tiny config with random weights, renames its state
dict to SHI-Labs/OneFormer's names (the map below is the inverse of transformers'
`convert_to_hf_oneformer.py`, which documents how the two layouts correspond), loads it strictly
into ours and runs the same inputs. Because the load is strict, the same tests prove that a
state dict under SHI-Labs names fits our modules key for key.

Known difference, pinned below: transformers' text encoder never passes its causal mask to the
attention, while SHI-Labs' (the one checkpoints were trained with) does; ours follows SHI-Labs,
so the text comparison gives transformers' layers the mask.
"""

import re

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from transformers import OneFormerConfig, SwinConfig
from transformers.models.oneformer import modeling_oneformer as hf_oneformer

from tao_core.specs.oneformer import SPEC
from tao_core.text import task_text, tokenize
from tao_pytorch.detr.deformable_transformer import MLP
from tao_pytorch.oneformer.model.oneformer import build_oneformer
from tao_pytorch.oneformer.model.text_encoder import TextTransformer, encode_text_queries
from tao_pytorch.oneformer.model.transformer_decoder import ContrastiveMultiScaleMaskedTransformerDecoder

TOL = 1e-4  # relative to the largest magnitude of the reference tensor

# transformers name (after its module prefix) -> SHI-Labs name; the first matching rule applies.
DECODER_RULES = [
    (r"^queries_embedder\.", "query_embed."),
    (r"^level_embed\.", "level_embed."),
    (r"^decoder\.query_transformer\.", "class_transformer."),
    (r"^decoder\.decoder_norm\.", "decoder_norm."),
    (r"^decoder\.layers\.(\d+)\.cross_attn\.", r"transformer_cross_attention_layers.\1."),
    (r"^decoder\.layers\.(\d+)\.self_attn\.self_attn\.out_proj\.", r"transformer_self_attention_layers.\1.self_attn.out_proj."),
    (r"^decoder\.layers\.(\d+)\.self_attn\.norm\.", r"transformer_self_attention_layers.\1.norm."),
    (r"^decoder\.layers\.(\d+)\.ffn\.", r"transformer_ffn_layers.\1."),
    (r"^decoder\.query_input_projection\.", "class_input_proj."),
    (r"^decoder\.class_embed\.", "class_embed."),
    (r"^decoder\.mask_embed\.layers\.(\d+)\.0\.", r"mask_embed.layers.\1."),
]
# separate q / k / v projections -> one packed nn.MultiheadAttention in_proj (q, k, v order)
# (pattern, target, number of the group that says q / k / v)
DECODER_QKV = (r"^decoder\.layers\.(\d+)\.self_attn\.self_attn\.([qkv])_proj\.(weight|bias)$",
               r"transformer_self_attention_layers.\1.self_attn.in_proj_\3", 2)

TEXT_RULES = [
    (r"^text_encoder\.transformer\.layers\.(\d+)\.self_attn\.", r"text_encoder.transformer.resblocks.\1.attn."),
    (r"^text_encoder\.transformer\.layers\.(\d+)\.layer_norm1\.", r"text_encoder.transformer.resblocks.\1.ln_1."),
    (r"^text_encoder\.transformer\.layers\.(\d+)\.layer_norm2\.", r"text_encoder.transformer.resblocks.\1.ln_2."),
    (r"^text_encoder\.transformer\.layers\.(\d+)\.mlp\.fc1\.", r"text_encoder.transformer.resblocks.\1.mlp.c_fc."),
    (r"^text_encoder\.transformer\.layers\.(\d+)\.mlp\.fc2\.", r"text_encoder.transformer.resblocks.\1.mlp.c_proj."),
    (r"^text_encoder\.(positional_embedding|token_embedding\.|ln_final\.)", r"text_encoder.\1"),
    (r"^text_projector\.layers\.(\d+)\.0\.", r"text_projector.layers.\1."),
    (r"^prompt_ctx\.", "prompt_ctx."),
]

_SWIN = r"^pixel_level_module\.encoder\.swin\."
_BLOCK = _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_PIX = r"^pixel_level_module\.decoder\."
MODEL_RULES = [
    (r"^(criterion\.|pixel_level_module\.encoder\.swin\.layernorm\.)", None),  # loss buffers; a norm D2 Swin lacks
    (_SWIN + r"embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
    (_SWIN + r"embeddings\.norm\.", "backbone.patch_embed.norm."),
    (_BLOCK + r"layernorm_before\.", r"backbone.layers.\1.blocks.\2.norm1."),
    (_BLOCK + r"layernorm_after\.", r"backbone.layers.\1.blocks.\2.norm2."),
    (_BLOCK + r"attention\.o_proj\.", r"backbone.layers.\1.blocks.\2.attn.proj."),
    (_BLOCK + r"attention\.relative_position_bias\.relative_position_bias_table",
     r"backbone.layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (_BLOCK + r"mlp\.", r"backbone.layers.\1.blocks.\2.mlp."),
    (_SWIN + r"encoder\.layers\.(\d+)\.downsample\.", r"backbone.layers.\1.downsample."),
    (r"^pixel_level_module\.encoder\.hidden_states_norms\.stage(\d)\.", lambda m: f"backbone.norm{int(m[1]) - 1}."),
    (_PIX + r"level_embed", "sem_seg_head.pixel_decoder.transformer.level_embed"),
    (_PIX + r"input_projections\.", "sem_seg_head.pixel_decoder.input_proj."),
    (_PIX + r"encoder\.layers\.(\d+)\.self_attn\.", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.self_attn."),
    (_PIX + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm1."),
    (_PIX + r"encoder\.layers\.(\d+)\.fc1\.", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.linear1."),
    (_PIX + r"encoder\.layers\.(\d+)\.fc2\.", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.linear2."),
    (_PIX + r"encoder\.layers\.(\d+)\.final_layer_norm\.", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm2."),
    (_PIX + r"mask_projection\.", "sem_seg_head.pixel_decoder.mask_features."),
    (_PIX + r"(adapter|layer)_(\d+)\.0\.", r"sem_seg_head.pixel_decoder.\1_\2."),
    (_PIX + r"(adapter|layer)_(\d+)\.1\.", r"sem_seg_head.pixel_decoder.\1_\2.norm."),
    (r"^task_encoder\.task_mlp\.layers\.(\d+)\.0\.", r"task_mlp.layers.\1."),
]
MODEL_QKV = (_BLOCK + r"attention\.([qkv])_proj\.(weight|bias)$", r"backbone.layers.\1.blocks.\2.attn.qkv.\4", 3)


def rename(state: dict, rules, qkv=None) -> dict:
    """transformers state dict -> SHI-Labs names (q / k / v packed back into one tensor)."""
    out, packs = {}, {}
    for name, tensor in state.items():
        m = re.match(qkv[0], name) if qkv else None
        if m:
            packs.setdefault(m.expand(qkv[1]), {})[m[qkv[2]]] = tensor
            continue
        for pattern, target in rules:
            m = re.match(pattern, name)
            if m:
                if target is not None:
                    new = target(m) if callable(target) else m.expand(target)
                    out[new + name[m.end():]] = tensor
                break
        else:
            raise AssertionError(f"no rule for transformers key {name}")
    for name, parts in packs.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def randomize(module: nn.Module, seed: int) -> None:
    """Weights far from their initial values (norms not 1 / 0, embeddings filled), so a swapped or
    skipped tensor shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if p.dim() == 1 else 0.1 * noise)


def rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.detach() - ref.detach()).abs().max() / ref.detach().abs().max())


# ---------------------------------------------------------------- transformer decoder alone

HIDDEN = 64


def _decoder_pair(dropout: float):
    hf_cfg = OneFormerConfig(
        hidden_dim=HIDDEN, conv_dim=HIDDEN, mask_dim=HIDDEN, num_attention_heads=4, dim_feedforward=128,
        decoder_layers=5, query_dec_layers=2, num_queries=10, num_labels=5, dropout=dropout,
    )
    reference = hf_oneformer.OneFormerTransformerModule(HIDDEN, hf_cfg)
    randomize(reference, 0)
    ours = ContrastiveMultiScaleMaskedTransformerDecoder(
        in_channels=HIDDEN, mask_dim=HIDDEN, num_classes=5, hidden_dim=HIDDEN, num_queries=10, nheads=4,
        dim_feedforward=128, dropout=dropout, dec_layers=5, class_dec_layers=2,
    )
    ours.load_state_dict(rename(reference.state_dict(), DECODER_RULES, DECODER_QKV), strict=True)
    return reference, ours


def _decoder_inputs():
    g = torch.Generator().manual_seed(1)
    # three levels, coarsest first, non-square; mask features at 4x the finest level
    feats = [torch.randn(2, HIDDEN, s, s + 3, generator=g) for s in (4, 8, 16)]
    return feats, torch.randn(2, HIDDEN, 32, 38, generator=g), torch.randn(2, HIDDEN, generator=g)


def test_transformer_decoder_matches_transformers():
    reference, ours = _decoder_pair(dropout=0.1)
    reference.eval(), ours.eval()
    feats, mask_features, task = _decoder_inputs()
    with torch.no_grad():
        ref = reference(feats, mask_features, task)
        out = ours(feats, mask_features, task)
    assert out["pred_logits"].shape == (2, 10, 6) and out["pred_masks"].shape == (2, 10, 32, 38)
    assert rel(out["pred_logits"], ref.prediction_class) < TOL
    assert rel(out["pred_masks"], ref.prediction_masks) < TOL
    assert len(out["aux_outputs"]) == len(ref.auxiliary_predictions) == 4
    for a, b in zip(out["aux_outputs"], ref.auxiliary_predictions):
        assert rel(a["pred_logits"], b["class_queries_logits"]) < TOL
        assert rel(a["pred_masks"], b["masks_queries_logits"]) < TOL
    # the masked attention is exercised: the first layer's queries see part of the coarsest map only
    first = F.interpolate(out["aux_outputs"][0]["pred_masks"], size=(4, 7), mode="bilinear", align_corners=False)
    assert 0.05 < float((first.sigmoid() < 0.5).float().mean()) < 0.95
    # negative control: one changed weight is seen
    with torch.no_grad():
        ours.transformer_cross_attention_layers[1].multihead_attn.out_proj.weight.mul_(1.5)
        changed = ours(feats, mask_features, task)
    assert rel(changed["pred_masks"], ref.prediction_masks) > 10 * TOL


def test_contrastive_queries_match_transformers_in_training():
    reference, ours = _decoder_pair(dropout=0.0)  # training mode without dropout: deterministic
    reference.train(), ours.train()
    feats, mask_features, task = _decoder_inputs()
    ref = reference(feats, mask_features, task)
    out = ours(feats, mask_features, task)
    assert out["contrastive_logits"].shape == (2, 10, HIDDEN)
    assert rel(out["contrastive_logits"], ref.contrastive_logits) < TOL
    assert rel(out["pred_masks"], ref.prediction_masks) < TOL


# ---------------------------------------------------------------- text encoder + projector + prompt context


class _CausalAttention(nn.Module):
    """transformers' text attention given the causal mask it builds but does not pass."""

    def __init__(self, attn: nn.MultiheadAttention, mask: torch.Tensor):
        super().__init__()
        self.attn, self.mask = attn, mask

    def forward(self, q, k, v, **kwargs):
        return self.attn(q, k, v, attn_mask=self.mask, **kwargs)


def test_text_branch_matches_transformers_text_mapper():
    hf_cfg = OneFormerConfig(hidden_dim=HIDDEN, text_encoder_width=HIDDEN, text_encoder_num_layers=2,
                             text_encoder_proj_layers=2, text_encoder_n_ctx=3)
    reference = hf_oneformer.OneFormerTextMapper(hf_cfg).eval()
    randomize(reference, 2)
    holder = nn.Module()
    holder.text_encoder = TextTransformer(77, HIDDEN, 2, 49408)
    holder.text_projector = MLP(HIDDEN, HIDDEN, HIDDEN, 2)
    holder.prompt_ctx = nn.Embedding(3, HIDDEN)
    holder.load_state_dict(rename(reference.state_dict(), TEXT_RULES), strict=True)
    holder.eval()
    texts = ["a photo with a car", "a photo with a traffic light", "a photo with a person", "a semantic photo"]
    ids = torch.from_numpy(tokenize(texts)).view(2, 2, 77)
    with torch.no_grad():
        unmasked = reference(ids)
        for layer in reference.text_encoder.transformer.layers:
            layer.self_attn = _CausalAttention(layer.self_attn, reference.text_encoder.build_attention_mask())
        ref = reference(ids)
        out = encode_text_queries(holder.text_encoder, holder.text_projector, holder.prompt_ctx, ids)
    assert out.shape == (2, 2 + 3, HIDDEN)
    assert rel(out, ref) < TOL
    # transformers without the mask is a different function (so the mask is really applied here)
    assert rel(out, unmasked) > 100 * TOL


# ---------------------------------------------------------------- the whole network

TINY = [
    "model.backbone.swin.embed_dim=48", "model.backbone.swin.depths=[2,2,2,2]",
    "model.backbone.swin.num_heads=[2,4,8,16]", "model.backbone.swin.window_size=4",
    "model.backbone.swin.drop_path_rate=0.0", "model.sem_seg_head.num_classes=5",
    "model.sem_seg_head.convs_dim=64", "model.sem_seg_head.mask_dim=64", "model.sem_seg_head.transformer_enc_layers=2",
    "model.one_former.hidden_dim=64", "model.one_former.nheads=4", "model.one_former.dim_feedforward=128",
    "model.one_former.dec_layers=3", "model.one_former.num_object_queries=8",
    "model.text_encoder.width=64", "model.text_encoder.num_layers=2", "model.text_encoder.n_ctx=2",
]


def tiny_spec(*overrides):
    return OmegaConf.merge(SPEC.defaults("train"), OmegaConf.from_dotlist(TINY + list(overrides)))


def _hf_model():
    swin = SwinConfig(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[2, 4, 8, 16], window_size=4, drop_path_rate=0.0,
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = OneFormerConfig(
        backbone_config=swin, conv_dim=64, mask_dim=64, hidden_dim=64, num_attention_heads=4, dim_feedforward=128,
        decoder_layers=3, query_dec_layers=2, num_queries=8, num_labels=5, encoder_layers=2,
        encoder_feedforward_dim=1024, text_encoder_width=64, text_encoder_num_layers=2, text_encoder_n_ctx=2,
    )
    model = hf_oneformer.OneFormerForUniversalSegmentation(cfg).eval()
    randomize(model, 3)
    return model


def _shi_labs_state(hf_model) -> dict:
    state = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    rules = [(r"^transformer_module\." + p[1:], "sem_seg_head.predictor." + t) for p, t in DECODER_RULES]
    qkv = (r"^transformer_module\." + DECODER_QKV[0][1:], "sem_seg_head.predictor." + DECODER_QKV[1], DECODER_QKV[2])
    decoder = {k: v for k, v in state.items() if k.startswith("transformer_module.")}
    rest = {k: v for k, v in state.items() if not k.startswith("transformer_module.")}
    return {**rename(rest, MODEL_RULES, MODEL_QKV), **rename(decoder, rules, qkv)}


def test_oneformer_matches_transformers_oneformer():
    reference = _hf_model()
    spec = tiny_spec()
    ours = build_oneformer(spec, with_text=False).eval()
    state = _shi_labs_state(reference)
    # the only keys transformers has no tensor for: D2 Swin's constant relative-position index buffers
    constants = {k: v for k, v in ours.state_dict().items() if k.endswith("relative_position_index")}
    assert set(ours.state_dict()) - set(state) == set(constants)
    ours.load_state_dict({**state, **constants}, strict=True)

    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 160, 192, generator=g) * 255  # every Swin stage (down to 5 x 6) larger than the window
    task_ids = torch.from_numpy(tokenize([task_text("panoptic"), task_text("semantic")]))
    mean = torch.tensor(list(spec.dataset.pixel_mean)).view(1, 3, 1, 1)
    std = torch.tensor(list(spec.dataset.pixel_std)).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = reference(pixel_values=(images - mean) / std, task_inputs=task_ids.float())
        out = ours(images, task_ids)
    assert out["pred_logits"].shape == (2, 8, 6) and out["pred_masks"].shape == (2, 8, 40, 48)
    err_cls = rel(out["pred_logits"], ref.class_queries_logits)
    err_mask = rel(out["pred_masks"], ref.masks_queries_logits)
    assert err_cls < TOL and err_mask < TOL, (err_cls, err_mask)
    # the task token conditions the output: the two images' tasks differ
    with torch.no_grad():
        swapped = ours(images, task_ids.flip(0))
    assert rel(swapped["pred_logits"], out["pred_logits"]) > 100 * TOL

