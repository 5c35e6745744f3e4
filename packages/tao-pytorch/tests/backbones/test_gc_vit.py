"""GCViT trunks: TAO's key names, published sizes, shapes, gradients, weight loading, ONNX, one DINO step."""

import hashlib

import pytest
import torch
from model_helpers import NUM_CLASSES, assert_trunk_onnx_matches, tiny_dino, tiny_targets

from tao_pytorch.backbones import build_backbone_body
from tao_pytorch.backbones.gc_vit import GCVIT_SPECS, GCViT, load_pretrained_gc_vit
from tao_pytorch.detr import HungarianMatcher, SetCriterion, build_weight_dict, total_loss
from tao_pytorch.detr.optim import enable_activation_checkpointing
from tao_pytorch.dino.model import build_dino

# sha256 (first 16 hex) of the sorted "key:shape" lines of the state dict of TAO's detection GCViT
# (nvidia_tao_pytorch/cv/deformable_detr/model/gc_vit.py, out_indices=[1, 2, 3]), and its key
# count, measured once from TAO's code (timm's DropPath / trunc_normal_ shimmed).
TAO_STATE_FINGERPRINT = {
    "gc_vit_xxtiny": (240, "ea22f66cae423a5c"),
    "gc_vit_xtiny": (324, "8cb552804c1884de"),
    "gc_vit_tiny": (506, "6a1978841bfcaee1"),
    "gc_vit_small": (568, "37b9538faa294ee1"),
    "gc_vit_base": (568, "bab49bf0d06ab7c4"),
    "gc_vit_large": (568, "30c77d52c17047d1"),
}
# NVlabs GCViT README, ImageNet-1K classifiers, #Params(M) (rounded to the million).
PUBLISHED_MPARAMS = {
    "gc_vit_xxtiny": 12,
    "gc_vit_xtiny": 20,
    "gc_vit_tiny": 28,
    "gc_vit_small": 51,
    "gc_vit_base": 90,
    "gc_vit_large": 201,
}


def _fingerprint(state) -> str:
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def _xxtiny(indices=(1, 2, 3), **kw) -> GCViT:
    torch.manual_seed(0)
    return GCViT("gc_vit_xxtiny", return_indices=indices, **kw)


@pytest.mark.parametrize("name", sorted(GCVIT_SPECS))
def test_state_dict_matches_tao_layout(name):
    with torch.device("meta"):  # shapes only: no memory, no init time
        state = GCViT(name, return_indices=[1, 2, 3]).state_dict()
    assert (len(state), _fingerprint(state)) == TAO_STATE_FINGERPRINT[name]


@pytest.mark.parametrize("name", sorted(GCVIT_SPECS))
def test_parameter_count_matches_published(name):
    # the published figure is the classifier: trunk (no detection output norms) + final LayerNorm + 1000-way head
    with torch.device("meta"):
        net = GCViT(name, return_indices=[0, 1, 2, 3])
    c = net.stage_channels[3]
    trunk = sum(p.numel() for k, p in net.named_parameters() if not k.startswith("norm"))
    classifier = trunk + 2 * c + 1000 * c + 1000
    # large: 202.1M against the README's 201M (all others round to the figure)
    assert abs(classifier / 1e6 - PUBLISHED_MPARAMS[name]) / PUBLISHED_MPARAMS[name] < 0.01


def test_tao_key_names():
    keys = set(_xxtiny([0, 1, 2, 3]).state_dict())
    for k in [
        "patch_embed.proj.weight",
        "patch_embed.conv_down.conv.2.fc.0.weight",
        "patch_embed.conv_down.reduction.weight",
        "levels.0.blocks.0.attn.qkv.weight",
        "levels.0.blocks.1.attn.relative_position_bias_table",
        "levels.0.blocks.1.attn.relative_position_index",
        "levels.0.q_global_gen.to_q_global.2.conv.3.weight",
        "levels.2.q_global_gen.to_q_global.0.conv.0.weight",
        "levels.2.downsample.norm2.weight",
        "levels.3.blocks.1.mlp.fc2.bias",
        "norm0.weight",
        "norm3.bias",
    ]:
        assert k in keys, k
    assert "levels.3.downsample.reduction.weight" not in keys
    with torch.device("meta"):
        ls_keys = set(GCViT("gc_vit_small", [3]).state_dict())
    assert "levels.1.blocks.0.gamma1" in ls_keys and "levels.1.blocks.0.gamma1" not in keys


@pytest.mark.parametrize("indices", [[0, 1, 2, 3], [1, 2, 3], [2, 3], [3], [1]])
def test_forward_shapes_and_levels(indices):
    net = _xxtiny(indices).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 96))
    full = {0: (64, 16, 24), 1: (128, 8, 12), 2: (256, 4, 6), 3: (512, 2, 3)}
    assert [tuple(o.shape[1:]) for o in outs] == [full[i] for i in indices]
    assert net.num_channels == [full[i][0] for i in indices]
    assert net.strides == [[4, 8, 16, 32][i] for i in indices]
    assert {k.split(".")[0] for k in net.state_dict() if k.startswith("norm")} == {f"norm{i}" for i in indices}


def test_input_smaller_than_windows_and_bad_indices():
    # 32x32: stage maps 8, 4, 2, 1 pixels, all smaller than their windows (padded, then cropped)
    with torch.no_grad():
        outs = _xxtiny([0, 1, 2, 3]).eval()(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2), (2, 512, 1, 1)]
    for bad in ([4], []):
        with pytest.raises(ValueError, match="0..3"):
            GCViT("gc_vit_xxtiny", return_indices=bad)


def test_gradients_flow_and_freeze():
    body = build_backbone_body("gc_vit_xxtiny", [1, 2], train_backbone=True)
    body.train()
    sum(o.square().mean() for o in body(torch.randn(2, 3, 64, 64))).backward()
    trainable = {n for n, p in body.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(("levels.3.", "levels.2.downsample.")) for n in trainable)
    no_grad = [n for n, p in body.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, no_grad[:5]
    assert any(n.startswith("patch_embed.") for n in trainable)  # TAO freezes no GCViT stage
    frozen = build_backbone_body("gc_vit_xxtiny", [1, 2], train_backbone=False)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_activation_checkpointing_same_gradients():
    x = torch.randn(1, 3, 32, 32)
    grads = []
    for ckpt in (False, True):
        net = _xxtiny([1], drop_path_rate=0.0).train()
        if ckpt:
            assert enable_activation_checkpointing(net) == 2  # the 2 stages that run
        sum(o.sum() for o in net(x)).backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-6)


def test_tao_state_dict_loads_strictly(tmp_path):
    src = _xxtiny([1, 2, 3]).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # zero-initialised tables / biases must load too
    path = tmp_path / "gc_vit_tao.pth"
    # a TAO / Lightning-style detector checkpoint: wrapped, keys prefixed
    torch.save({"state_dict": {"model.backbone.0.body." + k: v for k, v in src.state_dict().items()}}, path)
    dst = GCViT("gc_vit_xxtiny", [1, 2, 3])
    report = load_pretrained_gc_vit(dst, path)
    assert report.missing == [] and report.unexpected == []
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(src(x), dst.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # through the builder, as model.pretrained_backbone_path
    build_backbone_body("gc_vit_xxtiny", [1, 2, 3], pretrained_backbone_path=str(path))


def test_classifier_checkpoint_reports_keys(tmp_path):
    # an ImageNet checkpoint (NVlabs layout): final `norm` + `head`, no detection output norms
    state = {k: v for k, v in _xxtiny([0, 1, 2, 3]).state_dict().items() if not k.startswith("norm")}
    state.update({"norm.weight": torch.ones(512), "norm.bias": torch.zeros(512),
                  "head.weight": torch.zeros(1000, 512), "head.bias": torch.zeros(1000)})
    path = tmp_path / "gcvit_xxtiny_in1k.pth"
    torch.save(state, path)
    report = load_pretrained_gc_vit(GCViT("gc_vit_xxtiny", [2, 3]), path)
    assert report.missing == ["norm2.bias", "norm2.weight", "norm3.bias", "norm3.weight"]
    assert report.unexpected == ["head.bias", "head.weight", "norm.bias", "norm.weight"]


def test_wrong_checkpoint_names_file_and_keys(tmp_path):
    path = tmp_path / "xtiny.pth"
    with torch.device("meta"):
        meta = GCViT("gc_vit_xtiny", [1, 2, 3]).state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in meta.items()}, path)
    with pytest.raises(ValueError, match=r"xtiny\.pth does not fit backbone gc_vit_xxtiny.*unexpected") as err:
        load_pretrained_gc_vit(GCViT("gc_vit_xxtiny", [1, 2, 3]), path)
    assert "levels.0.blocks.2" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained_gc_vit(GCViT("gc_vit_xxtiny"), tmp_path / "nope.pth")


def test_onnx_export_matches_onnxruntime(tmp_path):
    net = _xxtiny([1, 2, 3]).eval()
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / "gc_vit_xxtiny.onnx"
    assert_trunk_onnx_matches(net, x, path, num_levels=3)


def test_tiny_dino_with_gc_vit_trains_one_step(batch):
    torch.manual_seed(0)
    model = build_dino(tiny_dino(backbone="gc_vit_xxtiny"), NUM_CLASSES).train()
    targets = tiny_targets()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    out = model(batch, targets)
    weights = build_weight_dict(2.0, 5.0, 2.0, dec_layers=2, enc_suffix="_interm", use_dn=True)
    loss = total_loss(SetCriterion(NUM_CLASSES, HungarianMatcher(), weights)(out, targets), weights)
    assert torch.isfinite(loss)
    loss.backward()
    body = model.backbone[0].body
    assert isinstance(body, GCViT)
    before = body.levels[1].blocks[0].attn.qkv.weight.detach().clone()
    assert body.levels[1].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, body.levels[1].blocks[0].attn.qkv.weight)
