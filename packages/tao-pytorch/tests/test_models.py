import pytest
import torch
from model_helpers import NUM_CLASSES, tiny_ddetr, tiny_dino

from tao_pytorch.deformable_detr.model import build_deformable_detr
from tao_pytorch.detr import HungarianMatcher, SetCriterion, build_weight_dict, total_loss
from tao_pytorch.dino.model import build_dino

BUILDERS = {
    "ddetr": lambda **kw: build_deformable_detr(tiny_ddetr(**kw), NUM_CLASSES),
    "ddetr_two_stage": lambda **kw: build_deformable_detr(tiny_ddetr(**kw), NUM_CLASSES, two_stage=True),
    "dino": lambda **kw: build_dino(tiny_dino(**kw), NUM_CLASSES),
    "dino_no_two_stage": lambda **kw: build_dino(tiny_dino(**kw), NUM_CLASSES, two_stage_type="no"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_forward_backward_padded_batch(name, batch, targets):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    out = model(batch, targets)
    assert out["pred_logits"].shape == (2, 12, NUM_CLASSES)
    assert out["pred_boxes"].shape == (2, 12, 4)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    assert len(out["aux_outputs"]) == 1
    enc = {"ddetr_two_stage": "_enc", "dino": "_interm"}.get(name)
    if enc == "_enc":
        assert out["enc_outputs"]["pred_logits"].shape[-1] == NUM_CLASSES
    if enc == "_interm":
        assert out["interm_outputs"]["pred_boxes"].shape == (2, 12, 4)
    use_dn = name.startswith("dino")
    if use_dn:
        assert out["dn_meta"]["pad_size"] > 0
    weights = build_weight_dict(2.0, 5.0, 2.0, dec_layers=2, enc_suffix=enc, use_dn=use_dn)
    crit = SetCriterion(NUM_CLASSES, HungarianMatcher(), weights)
    losses = crit(out, targets)
    assert set(weights) <= set(losses)
    loss = total_loss(losses, weights)
    assert torch.isfinite(loss)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_grad = [n for n, p in trainable if p.grad is None]
    # with 4 levels from stages 1..3 + 1 extra, every trainable parameter gets a gradient
    assert not no_grad, no_grad[:5]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_padded_pixels_do_not_change_outputs(name, batch):
    model = BUILDERS[name]().eval()
    changed = batch.clone()
    pad = changed[1, 3] > 0
    changed[1, :3, pad] = torch.randn(3, int(pad.sum())) * 10
    with torch.no_grad():
        a, b = model(batch), model(changed)
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"])
    torch.testing.assert_close(a["pred_boxes"], b["pred_boxes"])


def test_padded_features_do_not_change_transformer_outputs():
    """Below the backbone: features at padded positions are invisible to the transformer."""
    torch.manual_seed(0)
    model = build_dino(tiny_dino(), NUM_CLASSES).eval()
    tr = model.transformer
    shapes = [(8, 12), (4, 6), (2, 3), (1, 2)]
    srcs = [torch.randn(2, 32, h, w) for h, w in shapes]
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in shapes]
    for m, (_, w) in zip(masks, shapes):
        m[1, :, max(1, w * 3 // 4) :] = True
    pos = [model.backbone[1](m) for m in masks]
    with torch.no_grad():
        hs_a, refs_a, *_ = tr(srcs, masks, pos)
        changed = [s.clone() for s in srcs]
        for s, m in zip(changed, masks):
            s[1][:, m[1]] = torch.randn(32, int(m[1].sum())) * 10
        hs_b, refs_b, *_ = tr(changed, masks, pos)
    torch.testing.assert_close(hs_a[-1], hs_b[-1])
    torch.testing.assert_close(refs_a[-1], refs_b[-1])


def test_return_interm_indices_and_levels():
    model = build_dino(tiny_dino(num_feature_levels=1, return_interm_indices=[1]), NUM_CLASSES).eval()
    assert model.backbone.num_channels == [128]
    out = model(torch.randn(1, 3, 64, 64))
    assert out["pred_logits"].shape == (1, 12, NUM_CLASSES)
    model = build_deformable_detr(tiny_ddetr(num_feature_levels=5, return_interm_indices=[0, 1, 2, 3, 4]), NUM_CLASSES)
    assert len(model.input_proj) == 5 and model.backbone.strides == [4, 8, 16, 32]
    assert model.input_proj[4][0].stride == (2, 2)
    with pytest.raises(ValueError, match="num_feature_levels"):
        build_dino(tiny_dino(num_feature_levels=3), NUM_CLASSES)
    with pytest.raises(ValueError, match="num_queries=12 encoder tokens"):
        build_dino(tiny_dino(num_feature_levels=1, return_interm_indices=[3]), NUM_CLASSES)(torch.randn(1, 3, 64, 64))
    with pytest.raises(NotImplementedError, match="vit_large_dinov2"):
        build_dino(tiny_dino(backbone="vit_large_dinov2"), NUM_CLASSES)


def test_eval_mode_has_no_denoising(batch, targets):
    model = build_dino(tiny_dino(), NUM_CLASSES).eval()
    out = model(batch, targets)
    assert out["dn_meta"] is None and out["pred_logits"].shape[1] == 12


def test_fix_refpoints_hw_variants():
    for value in (-2, 0.1):
        model = build_dino(tiny_dino(fix_refpoints_hw=value), NUM_CLASSES, two_stage_type="no").eval()
        out = model(torch.randn(1, 3, 64, 96))  # tiny hidden_dim=32: GroupNorm(32) needs > 1 pixel per level
        assert out["pred_boxes"].shape == (1, 12, 4)
