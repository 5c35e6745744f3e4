"""D2SwinTransformer: window attention and shifted-window masks against a naive reference,
feature maps against transformers' SwinBackbone (same weights, mapped by name), SHI-Labs key
layout, pretrained loading, freeze_at, activation checkpointing and gradients."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from tao_core.specs.oneformer_model import BackboneConfig, SwinConfig
from tao_pytorch.backbones.swin import (
    MASKED_LOGIT,
    D2SwinTransformer,
    SwinTransformerBlock,
    build_swin_backbone,
    shifted_window_mask,
)
from tao_pytorch.backbones.vit_layers import relative_position_index

TINY = SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=2, drop_path_rate=0.0)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ----------------------------------------------------------------------------- naive reference


def naive_block(blk: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """The block computed token by token from the definition: after the cyclic roll by `shift`,
    token t attends to token s iff they are in the same window of the rolled (padded) map and the
    roll did not wrap them together (their distance in the image equals their distance in the
    rolled map); the bias is the table entry of their relative offset. No window partition, no
    additive mask."""
    b, h, w, c = x.shape
    ws, shift = blk.window_size, blk.shift_size
    heads = blk.attn.num_heads
    y = blk.norm1(x)
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
    ii, jj = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    ii, jj = ii.flatten(), jj.flatten()  # image coordinates of every padded token
    ri, rj = (ii - shift) % hp, (jj - shift) % wp  # where the roll puts them
    same_window = (ri[:, None] // ws == ri[None] // ws) & (rj[:, None] // ws == rj[None] // ws)
    not_wrapped = ((ri[:, None] - ri[None]) == (ii[:, None] - ii[None])) & (
        (rj[:, None] - rj[None]) == (jj[:, None] - jj[None])
    )
    allowed = same_window & not_wrapped
    dy, dx = ri[:, None] - ri[None], rj[:, None] - rj[None]
    index = ((dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1)).masked_fill(~same_window, 0)  # pairs in one window
    bias = blk.attn.relative_position_bias_table[index]  # (N, N, heads)
    tokens = y.reshape(b, hp * wp, c)
    q, k, v = blk.attn.qkv(tokens).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (q * blk.attn.scale) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, hp * wp, c)
    out = blk.attn.proj(out).view(b, hp, wp, c)[:, :h, :w]
    x = x + out
    return x + blk.mlp(blk.norm2(x))


@pytest.mark.parametrize("shift", [0, 1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 10)])
def test_window_attention_matches_naive(shift, hw):
    torch.manual_seed(0)
    window = 4
    blk = SwinTransformerBlock(16, 2, window, shift, 2.0, True, None, 0.0, 0.0, 0.0).eval()
    with torch.no_grad():
        blk.attn.relative_position_bias_table.normal_(0, 1.0)  # a bias large enough to matter
    x = torch.randn(2, *hw, 16)
    hp, wp = math.ceil(hw[0] / window) * window, math.ceil(hw[1] / window) * window
    mask = shifted_window_mask(hp, wp, window, shift) if shift else None
    with torch.no_grad():
        got, want = blk(x, mask), naive_block(blk, x)
    assert _rel(got, want) < 1e-5


def test_shifted_mask_separates_wrapped_regions():
    m = shifted_window_mask(4, 4, 2, 1)  # 4 windows of 2x2
    assert m.shape == (4, 4, 4)
    assert (m[0] == 0).all()  # the top-left window holds no wrapped token
    # the bottom-right window gathers 4 tokens from 4 different regions: each sees only itself
    assert torch.equal(m[3] == 0, torch.eye(4, dtype=torch.bool))
    assert set(m.unique().tolist()) == {0.0, MASKED_LOGIT}


# ----------------------------------------------------------------------------- transformers' SwinBackbone


def hf_to_d2_swin(hf_state: dict, depths) -> dict:
    """transformers SwinBackbone names -> SHI-Labs D2SwinTransformer names (q, k, v -> qkv)."""
    out = {}
    pre = "swin.encoder.layers"
    out["patch_embed.proj.weight"] = hf_state["swin.embeddings.patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = hf_state["swin.embeddings.patch_embeddings.projection.bias"]
    out["patch_embed.norm.weight"] = hf_state["swin.embeddings.norm.weight"]
    out["patch_embed.norm.bias"] = hf_state["swin.embeddings.norm.bias"]
    simple = {
        "layernorm_before": "norm1",
        "layernorm_after": "norm2",
        "attention.o_proj": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for i, depth in enumerate(depths):
        for j in range(depth):
            src, dst = f"{pre}.{i}.blocks.{j}", f"layers.{i}.blocks.{j}"
            for a, b in simple.items():
                for p in ("weight", "bias"):
                    out[f"{dst}.{b}.{p}"] = hf_state[f"{src}.{a}.{p}"]
            att = f"{src}.attention"
            table = hf_state[f"{att}.relative_position_bias.relative_position_bias_table"]
            out[f"{dst}.attn.relative_position_bias_table"] = table
            # transformers keeps the index as a non-persistent buffer: ours is the same function of the window
            out[f"{dst}.attn.relative_position_index"] = relative_position_index(int(math.isqrt(table.shape[0]) + 1) // 2)
            for p in ("weight", "bias"):
                out[f"{dst}.attn.qkv.{p}"] = torch.cat([hf_state[f"{att}.{n}_proj.{p}"] for n in "qkv"])
        if i < len(depths) - 1:
            out[f"layers.{i}.downsample.reduction.weight"] = hf_state[f"{pre}.{i}.downsample.reduction.weight"]
            out[f"layers.{i}.downsample.norm.weight"] = hf_state[f"{pre}.{i}.downsample.norm.weight"]
            out[f"layers.{i}.downsample.norm.bias"] = hf_state[f"{pre}.{i}.downsample.norm.bias"]
        for p in ("weight", "bias"):
            out[f"norm{i}.{p}"] = hf_state[f"hidden_states_norms.stage{i + 1}.{p}"]
    return out


def hf_swin_backbone(cfg: SwinConfig):
    from transformers import SwinBackbone
    from transformers import SwinConfig as HFSwinConfig

    hf_cfg = HFSwinConfig(
        embed_dim=cfg.embed_dim, depths=list(cfg.depths), num_heads=list(cfg.num_heads), window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_path_rate=0.0, patch_size=cfg.patch_size,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return SwinBackbone(hf_cfg).eval()


def randomize_(module):
    """Non-trivial LayerNorm affine parameters and bias tables (their inits are 1 / 0 / small)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name.endswith("norm.weight") else 0.0))


@pytest.mark.parametrize("hw", [(64, 64), (96, 128), (72, 100)])
def test_features_match_transformers_swin_backbone(hw):
    torch.manual_seed(0)
    hf = hf_swin_backbone(TINY)
    randomize_(hf)
    ours = D2SwinTransformer(TINY).eval()
    ours.load_state_dict(hf_to_d2_swin(hf.state_dict(), TINY.depths), strict=True)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        want = hf(x).feature_maps
        got = ours(x)
    assert list(got) == ["res2", "res3", "res4", "res5"]
    for name, ref in zip(got, want):
        assert got[name].shape == ref.shape
        assert _rel(got[name], ref) < 1e-4, name


# ----------------------------------------------------------------------------- contract, layout, loading


def test_output_contract_and_names():
    cfg = replace(TINY, out_features=["res3", "res5"])
    m = D2SwinTransformer(cfg).eval()
    out = m(torch.randn(1, 3, 50, 70))
    assert list(out) == ["res3", "res5"]
    assert m.out_channels == {"res3": 64, "res5": 256} and m.strides == {"res3": 8, "res5": 32}
    assert out["res3"].shape == (1, 64, 7, 9) and out["res5"].shape == (1, 256, 2, 3)
    keys = set(m.state_dict())
    for k in ("patch_embed.proj.weight", "layers.0.blocks.1.attn.relative_position_bias_table",
              "layers.2.downsample.reduction.weight", "norm0.weight", "norm3.bias"):
        assert k in keys


def test_bad_config_is_reported():
    with pytest.raises(ValueError, match="out_indices"):
        D2SwinTransformer(replace(TINY, out_indices=[1, 2, 3]))
    with pytest.raises(ValueError, match=r"num_heads\[1\]"):
        D2SwinTransformer(replace(TINY, num_heads=[1, 3, 4, 8]))
    with pytest.raises(NotImplementedError, match="not yet available"):
        build_swin_backbone(BackboneConfig(name="EfficientViT", swin=TINY))


def test_absolute_position_embedding_is_interpolated():
    cfg = replace(TINY, ape=True, pretrain_img_size=32)
    m = D2SwinTransformer(cfg).eval()
    assert m.absolute_pos_embed.shape == (1, 32, 8, 8)
    x = torch.randn(1, 3, 48, 40)
    base = m(x)["res2"]
    with torch.no_grad():
        m.absolute_pos_embed.add_(1.0)
    assert not torch.allclose(m(x)["res2"], base)


def test_shi_checkpoint_loads_strictly_and_pretrained_file(tmp_path):
    ours = D2SwinTransformer(TINY)
    full = {f"backbone.{k}": v.clone() + 0.01 for k, v in ours.state_dict().items()}
    full["sem_seg_head.pixel_decoder.mask_features.weight"] = torch.zeros(1)
    other = D2SwinTransformer(TINY)
    other.load_state_dict({k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}, strict=True)
    path = tmp_path / "oneformer.pth"
    torch.save({"model": full}, path)
    built = build_swin_backbone(BackboneConfig(pretrained_weights=str(path), swin=TINY, freeze_at=2))
    assert torch.equal(built.state_dict()["layers.1.blocks.0.attn.qkv.weight"],
                       full["backbone.layers.1.blocks.0.attn.qkv.weight"])
    # a classification checkpoint: head / final norm / attn_mask dropped, output norms kept at init
    cls = {k: v for k, v in ours.state_dict().items() if not k.startswith("norm")}
    cls.update({"head.weight": torch.zeros(10, 256), "norm.weight": torch.ones(256),
                "layers.0.blocks.1.attn_mask": torch.zeros(4, 4, 4)})
    torch.save(cls, tmp_path / "cls.pth")
    build_swin_backbone(BackboneConfig(pretrained_weights=str(tmp_path / "cls.pth"), swin=TINY))
    bad = dict(cls)
    bad["layers.0.blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape mismatch.*qkv"):
        build_swin_backbone(BackboneConfig(pretrained_weights=str(tmp_path / "bad.pth"), swin=TINY))


def test_freeze_at_and_gradients():
    m = build_swin_backbone(BackboneConfig(swin=replace(TINY, drop_rate=0.1), freeze_at=2)).train()
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("patch_embed.", "layers.0.", "layers.1.")) for n in frozen)
    assert any(n.startswith("layers.1.") for n in frozen) and any(n.startswith("patch_embed.") for n in frozen)
    assert not m.layers[0].training and m.layers[2].training
    out = m(torch.randn(1, 3, 64, 64))
    sum(v.sum() for v in out.values()).backward()
    for n, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = D2SwinTransformer(TINY).train()
    ckpt = D2SwinTransformer(replace(TINY, use_checkpoint=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for m in (plain, ckpt):
        out = m(x)
        sum((v**2).mean() for v in out.values()).backward()
        grads.append(m.layers[1].blocks[1].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
