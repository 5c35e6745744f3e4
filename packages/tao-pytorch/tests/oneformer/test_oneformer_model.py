"""OneFormer assembly: outputs, padding, training branch, gradients, checkpoint layouts (tiny Swin, CPU, seconds)."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from tao_core.specs.oneformer import SPEC
from tao_core.text import task_text, tokenize
from tao_pytorch.common.checkpoint import save_checkpoint
from tao_pytorch.oneformer.model.oneformer import build_oneformer, load_oneformer_weights
from tao_pytorch.oneformer.model.text_encoder import build_text_branch

TINY = [
    "model.backbone.swin.embed_dim=32", "model.backbone.swin.depths=[1,1,1,1]",
    "model.backbone.swin.num_heads=[1,2,4,8]", "model.backbone.swin.window_size=4",
    "model.backbone.swin.drop_path_rate=0.0", "model.sem_seg_head.num_classes=3",
    "model.sem_seg_head.convs_dim=64", "model.sem_seg_head.mask_dim=64", "model.sem_seg_head.transformer_enc_layers=1",
    "model.one_former.hidden_dim=64", "model.one_former.nheads=4", "model.one_former.dim_feedforward=64",
    "model.one_former.dec_layers=4", "model.one_former.num_object_queries=6", "model.one_former.class_dec_layers=1",
    "model.text_encoder.width=64", "model.text_encoder.num_layers=1", "model.text_encoder.n_ctx=2",
    "model.text_encoder.context_length=16",
]


def spec(*overrides):
    return OmegaConf.merge(SPEC.defaults("train"), OmegaConf.from_dotlist(TINY + list(overrides)))


def tasks(names, length=16):
    return torch.from_numpy(tokenize([task_text(n) for n in names], context_length=length))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_oneformer(spec())


def test_inference_outputs_on_a_padded_batch(model):
    model.eval()
    images = torch.rand(2, 3, 50, 70) * 255  # padded to 64 x 96 (size_divisibility 32)
    with torch.no_grad():
        out = model(images, tasks(["semantic", "instance"]))
    assert out["pred_logits"].shape == (2, 6, 4)  # num_object_queries, num_classes + 1
    assert out["pred_masks"].shape == (2, 6, 16, 24)  # padded size / 4
    assert len(out["aux_outputs"]) == 3  # dec_layers - 1 earlier predictions
    assert "contrastive_logits" not in out and "texts" not in out
    assert torch.isfinite(out["pred_masks"]).all()


def test_normalisation_uses_the_dataset_mean_and_std():
    m = build_oneformer(spec("dataset.pixel_mean=[10.0,20.0,30.0]", "dataset.pixel_std=[2.0,4.0,5.0]",
                             "model.one_former.size_divisibility=0"), with_text=False)
    x = m.preprocess(torch.tensor([10.0, 24.0, 40.0]).view(1, 3, 1, 1).expand(1, 3, 5, 7))
    assert x.shape == (1, 3, 5, 7)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_training_returns_contrastive_queries_and_every_parameter_gets_a_gradient(model):
    model.train()
    with torch.no_grad():
        # deformable attention starts with zero offset / weight projections, which pass no gradient
        # to their queries (so none to the pixel decoder's level_embed) at step 0: move them off zero
        for name, p in model.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                p.normal_(0.0, 0.01)
    images = torch.rand(2, 3, 32, 32) * 255
    class_texts = torch.from_numpy(tokenize([f"a photo with a {c}" for c in "abcd"] * 2, context_length=16))
    out = model(images, tasks(["panoptic", "semantic"]), class_texts.view(2, 4, 16))
    assert out["contrastive_logits"].shape == (2, 6, 64)
    assert out["texts"].shape == (2, 4 + 2, 64)  # 4 class texts + n_ctx learnable context queries
    loss = sum(o.float().square().mean() for o in (out["pred_logits"], out["pred_masks"], out["contrastive_logits"], out["texts"]))
    loss = loss + sum(a["pred_masks"].square().mean() + a["pred_logits"].square().mean() for a in out["aux_outputs"])
    loss.backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert without == []
    model.zero_grad()


def test_task_token_length_and_image_shape_are_checked(model):
    model.eval()
    with pytest.raises(ValueError, match=r"task ids must be \[B, 16\]"):
        model(torch.zeros(1, 3, 32, 32), tasks(["semantic"], length=77))
    with pytest.raises(ValueError, match="RGB images"):
        model(torch.zeros(1, 1, 32, 32), tasks(["semantic"]))
    model.train()
    assert model.num_class_texts == 6 - 2
    with pytest.raises(ValueError, match=r"text ids must be \[B, 4, L\]"):
        model(torch.zeros(1, 3, 32, 32), tasks(["semantic"]), torch.zeros(1, 5, 16, dtype=torch.long))
    model.eval()


def test_text_width_must_equal_hidden_with_context_queries():
    cfg = spec("model.text_encoder.width=128")
    with pytest.raises(ValueError, match=r"model.text_encoder.width \(128\) must equal model.one_former.hidden_dim"):
        build_text_branch(cfg.model.text_encoder, cfg.model.one_former.hidden_dim)


def test_tao_and_shi_labs_checkpoints_load_and_another_num_classes_skips_the_head(model, tmp_path, caplog):
    state = model.state_dict()
    # TAO: a Lightning checkpoint whose module holds the network as `model`
    tao = tmp_path / "model_epoch_000.pth"
    save_checkpoint({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 0}, tao)
    fresh = build_oneformer(spec())
    report = load_oneformer_weights(fresh, tao)
    assert report.missing == [] and report.unexpected == [] and report.skipped_shape == []
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())

    # SHI-Labs: {"model": state dict} plus the criterion's buffer; a dataset with 5 classes
    shi = tmp_path / "oneformer_shi.pth"
    save_checkpoint({"model": {**state, "criterion.empty_weight": torch.ones(4)}}, shi)
    other = build_oneformer(spec("model.sem_seg_head.num_classes=5"))
    with caplog.at_level(logging.WARNING):
        report = load_oneformer_weights(other, shi)
    skipped = sorted(s.split()[0] for s in report.skipped_shape)
    assert skipped == ["sem_seg_head.predictor.class_embed.bias", "sem_seg_head.predictor.class_embed.weight"]
    assert "class_embed" in caplog.text
    assert report.unexpected == ["criterion.empty_weight"]
    assert torch.equal(other.state_dict()["sem_seg_head.predictor.mask_embed.layers.0.weight"],
                       state["sem_seg_head.predictor.mask_embed.layers.0.weight"])


def test_reference_module_names(model):
    names = set(model.state_dict())
    for expected in [
        "backbone.patch_embed.proj.weight",
        "sem_seg_head.pixel_decoder.mask_features.weight",
        "sem_seg_head.predictor.query_embed.weight",
        "sem_seg_head.predictor.class_transformer.decoder.layers.0.multihead_attn.in_proj_weight",
        "sem_seg_head.predictor.transformer_cross_attention_layers.2.multihead_attn.out_proj.weight",
        "sem_seg_head.predictor.transformer_self_attention_layers.0.self_attn.in_proj_weight",
        "sem_seg_head.predictor.transformer_ffn_layers.0.linear1.weight",
        "sem_seg_head.predictor.level_embed.weight",
        "sem_seg_head.predictor.class_input_proj.weight",
        "sem_seg_head.predictor.mask_embed.layers.2.weight",
        "task_mlp.layers.1.weight",
        "text_encoder.transformer.resblocks.0.mlp.c_fc.weight",
        "text_encoder.positional_embedding",
        "text_projector.layers.1.weight",
        "prompt_ctx.weight",
    ]:
        assert expected in names, expected
    assert not any(k.endswith(("pixel_mean", "pixel_std", "causal_mask")) for k in names)
