"""MSDeformAttnPixelDecoder: same mask / multi-scale features as transformers' OneFormerPixelDecoder
with the same weights (mapped by name), SHI-Labs key layout, contract checks, bad configs, gradients."""

from dataclasses import replace

import pytest
import torch

from tao_core.specs.oneformer_model import OneFormerDecoderConfig, SemSegHeadConfig
from tao_pytorch.oneformer.model.pixel_decoder import MSDeformAttnPixelDecoder

CHANNELS = {"res2": 24, "res3": 48, "res4": 96, "res5": 192}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
SHAPE = {n: (CHANNELS[n], STRIDES[n]) for n in CHANNELS}
HEAD = SemSegHeadConfig(convs_dim=64, mask_dim=32, transformer_enc_layers=2)
DECODER = OneFormerDecoderConfig(nheads=4, dropout=0.0)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def features(h=64, w=96, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, CHANNELS[n], -(-h // STRIDES[n]), -(-w // STRIDES[n]), generator=g) for n in CHANNELS}


def hf_pixel_decoder(head: SemSegHeadConfig, decoder: OneFormerDecoderConfig):
    from transformers import OneFormerConfig, SwinConfig
    from transformers.models.oneformer.modeling_oneformer import OneFormerPixelDecoder

    cfg = OneFormerConfig(
        backbone_config=SwinConfig(embed_dim=24, out_features=["stage1", "stage2", "stage3", "stage4"]),
        conv_dim=head.convs_dim, mask_dim=head.mask_dim, encoder_layers=head.transformer_enc_layers,
        num_attention_heads=decoder.nheads, dropout=decoder.dropout, common_stride=head.common_stride,
    )
    decoder = OneFormerPixelDecoder(cfg, feature_channels=[CHANNELS[n] for n in ("res2", "res3", "res4", "res5")])
    # transformers allocates level_embed uninitialised (torch.Tensor(...)) and fills it in the
    # PreTrainedModel's _init_weights (zeros), which a bare submodule never runs: whatever the
    # memory held (NaN now and then) would reach both models. Give it that init here.
    torch.nn.init.zeros_(decoder.level_embed)
    return decoder.eval()


def hf_to_shi_pixel_decoder(hf_state: dict) -> dict:
    """transformers OneFormerPixelDecoder names -> SHI-Labs `sem_seg_head.pixel_decoder.` names."""
    layer_names = {"self_attn_layer_norm": "norm1", "fc1": "linear1", "fc2": "linear2", "final_layer_norm": "norm2"}
    out = {}
    for k, v in hf_state.items():
        parts = k.split(".")
        if parts[0] == "input_projections":
            k = "input_proj." + ".".join(parts[1:])
        elif parts[0] == "level_embed":
            k = "transformer.level_embed"
        elif parts[0] == "encoder":  # encoder.layers.<i>.<name>...
            parts[3] = layer_names.get(parts[3], parts[3])
            k = "transformer." + ".".join(parts)
        elif parts[0] == "mask_projection":
            k = "mask_features." + parts[1]
        elif parts[0].startswith(("adapter_", "layer_")):  # Sequential(conv, norm[, relu]) -> conv with .norm
            k = f"{parts[0]}.{parts[2]}" if parts[1] == "0" else f"{parts[0]}.norm.{parts[2]}"
        out[k] = v
    return out


def randomize_(module):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + p)


@pytest.mark.parametrize("hw", [(64, 96), (72, 100)])
def test_matches_transformers_pixel_decoder(hw):
    torch.manual_seed(0)
    hf = hf_pixel_decoder(HEAD, DECODER)
    randomize_(hf)  # sampling offsets / attention weights start at 0: make every path matter
    ours = MSDeformAttnPixelDecoder(SHAPE, HEAD, DECODER).eval()
    ours.load_state_dict(hf_to_shi_pixel_decoder(hf.state_dict()), strict=True)
    feats = features(*hw)
    with torch.no_grad():
        want = hf([feats[n] for n in ("res2", "res3", "res4", "res5")])
        got = ours(feats)
    assert got.mask_features.shape == (2, 32, -(-hw[0] // 4), -(-hw[1] // 4))
    assert _rel(got.mask_features, want.mask_features) < 1e-4
    assert len(got.multi_scale_features) == len(want.multi_scale_features) == 3
    for a, b in zip(got.multi_scale_features, want.multi_scale_features):
        assert a.shape == b.shape and _rel(a, b) < 1e-4
    # lowest resolution first
    assert [f.shape[-1] for f in got.multi_scale_features] == sorted(f.shape[-1] for f in got.multi_scale_features)


def test_shi_key_layout():
    keys = set(MSDeformAttnPixelDecoder(SHAPE, HEAD, DECODER).state_dict())
    for k in ("input_proj.0.0.weight", "input_proj.2.1.bias", "transformer.level_embed",
              "transformer.encoder.layers.1.self_attn.sampling_offsets.weight",
              "transformer.encoder.layers.0.linear1.weight", "transformer.encoder.layers.0.norm2.bias",
              "mask_features.weight", "mask_features.bias", "adapter_1.weight", "adapter_1.norm.weight",
              "layer_1.weight", "layer_1.norm.bias"):
        assert k in keys, k
    assert "adapter_1.bias" not in keys and not any(k.startswith(("lateral_convs", "output_convs")) for k in keys)


def test_common_stride_8_has_no_fpn_level_and_levels_follow_the_spec():
    head = replace(HEAD, common_stride=8)
    m = MSDeformAttnPixelDecoder(SHAPE, head, replace(DECODER, num_feature_levels=2)).eval()
    assert m.num_fpn_levels == 0 and not any(k.startswith("adapter_") for k in m.state_dict())
    out = m(features())
    assert out.mask_features.shape[-2:] == (8, 12) and len(out.multi_scale_features) == 2
    mask_features, multi_scale, *_ = out  # tuple unpacking of the NamedTuple
    assert mask_features is out.mask_features and multi_scale[0].shape[-2:] == (2, 3)


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match="convs_dim"):
        MSDeformAttnPixelDecoder(SHAPE, replace(HEAD, convs_dim=48), DECODER)
    with pytest.raises(ValueError, match="common_stride"):
        MSDeformAttnPixelDecoder(SHAPE, replace(HEAD, in_features=["res3", "res4", "res5"]), DECODER)
    with pytest.raises(ValueError, match="deformable_transformer_encoder_in_features"):
        MSDeformAttnPixelDecoder({n: SHAPE[n] for n in ("res2", "res3")}, HEAD, DECODER)


def test_gradients_reach_every_parameter_and_inputs():
    m = MSDeformAttnPixelDecoder(SHAPE, HEAD, replace(DECODER, dropout=0.1)).train()
    randomize_(m)
    feats = {k: v.requires_grad_() for k, v in features(32, 32).items()}
    out = m(feats)
    (out.mask_features.square().mean() + sum(f.mean() for f in out.multi_scale_features)).backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert all(f.grad is not None for f in feats.values())
