"""Parameter names follow the reference repositories (anchors-tao.md §2.8), so their checkpoints
(and TAO's, after stripping the `model.model.` prefix) load by name."""

import pytest
from model_helpers import NUM_CLASSES, tiny_ddetr, tiny_dino

from tao_pytorch.deformable_detr.model import build_deformable_detr
from tao_pytorch.dino.model import build_dino

BACKBONE_KEYS = [
    "backbone.0.body.conv1.weight",
    "backbone.0.body.bn1.running_mean",
    "backbone.0.body.layer1.0.conv1.weight",
    "backbone.0.body.layer2.0.downsample.0.weight",
    "backbone.0.body.layer3.0.downsample.1.running_var",
    "backbone.0.body.layer4.1.bn2.weight",
]
ENC_KEYS = [
    "transformer.level_embed",
    "transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
    "transformer.encoder.layers.0.self_attn.sampling_offsets.bias",
    "transformer.encoder.layers.0.self_attn.attention_weights.weight",
    "transformer.encoder.layers.0.self_attn.value_proj.weight",
    "transformer.encoder.layers.0.self_attn.output_proj.bias",
    "transformer.encoder.layers.0.norm1.weight",
    "transformer.encoder.layers.0.linear1.weight",
    "transformer.encoder.layers.0.linear2.bias",
    "transformer.encoder.layers.0.norm2.bias",
]
DEC_KEYS = [
    "transformer.decoder.layers.1.cross_attn.sampling_offsets.weight",
    "transformer.decoder.layers.1.cross_attn.value_proj.bias",
    "transformer.decoder.layers.0.self_attn.in_proj_weight",
    "transformer.decoder.layers.0.self_attn.in_proj_bias",
    "transformer.decoder.layers.0.self_attn.out_proj.weight",
    "transformer.decoder.layers.0.norm1.weight",
    "transformer.decoder.layers.0.norm2.weight",
    "transformer.decoder.layers.0.norm3.weight",
    "transformer.decoder.layers.0.linear1.weight",
    "transformer.decoder.layers.0.linear2.weight",
]
HEAD_KEYS = [
    "class_embed.0.weight",
    "class_embed.1.bias",
    "bbox_embed.0.layers.0.weight",
    "bbox_embed.1.layers.2.bias",
    "input_proj.0.0.weight",
    "input_proj.0.1.weight",
    "input_proj.2.1.bias",
    "input_proj.3.0.weight",
    "input_proj.3.1.weight",
]


def _keys(model):
    return set(model.state_dict())


def test_deformable_detr_box_refine_keys():
    keys = _keys(build_deformable_detr(tiny_ddetr(), NUM_CLASSES))
    expected = (
        BACKBONE_KEYS
        + ENC_KEYS
        + DEC_KEYS
        + HEAD_KEYS
        + [
            "query_embed.weight",
            "transformer.reference_points.weight",
            "transformer.reference_points.bias",
            "transformer.decoder.bbox_embed.0.layers.0.weight",
            "transformer.decoder.bbox_embed.1.layers.2.bias",
        ]
    )
    assert [k for k in expected if k not in keys] == []
    assert {k.split(".")[0] for k in keys} == {
        "backbone",
        "input_proj",
        "transformer",
        "class_embed",
        "bbox_embed",
        "query_embed",
    }
    assert not any(k.startswith("backbone.1") for k in keys)  # position encoding has no parameters


def test_deformable_detr_two_stage_keys():
    keys = _keys(build_deformable_detr(tiny_ddetr(), NUM_CLASSES, two_stage=True))
    for k in [
        "transformer.enc_output.weight",
        "transformer.enc_output_norm.weight",
        "transformer.pos_trans.weight",
        "transformer.pos_trans_norm.bias",
        "transformer.decoder.class_embed.2.weight",
        "transformer.decoder.bbox_embed.2.layers.0.weight",
        "class_embed.2.weight",
    ]:
        assert k in keys
    assert "query_embed.weight" not in keys and "transformer.reference_points.weight" not in keys
    with pytest.raises(ValueError, match="with_box_refine"):
        build_deformable_detr(tiny_ddetr(with_box_refine=False), NUM_CLASSES, two_stage=True)


def test_deformable_detr_shared_heads_without_refine():
    model = build_deformable_detr(tiny_ddetr(with_box_refine=False), NUM_CLASSES)
    assert model.class_embed[0] is model.class_embed[1]
    assert "class_embed.1.weight" in _keys(model)  # listed per layer, as in the reference
    assert not any(k.startswith("transformer.decoder.bbox_embed") for k in _keys(model))


def test_dino_keys_and_shapes():
    model = build_dino(tiny_dino(), NUM_CLASSES)
    state = model.state_dict()
    expected = (
        BACKBONE_KEYS
        + ENC_KEYS
        + DEC_KEYS
        + HEAD_KEYS
        + [
            "label_enc.weight",
            "transformer.tgt_embed.weight",
            "transformer.enc_output.weight",
            "transformer.enc_output_norm.weight",
            "transformer.enc_out_class_embed.weight",
            "transformer.enc_out_class_embed.bias",
            "transformer.enc_out_bbox_embed.layers.0.weight",
            "transformer.enc_out_bbox_embed.layers.2.bias",
            "transformer.decoder.norm.weight",
            "transformer.decoder.ref_point_head.layers.0.weight",
            "transformer.decoder.ref_point_head.layers.1.bias",
            "transformer.decoder.bbox_embed.0.layers.0.weight",
            "transformer.decoder.class_embed.1.weight",
        ]
    )
    assert [k for k in expected if k not in state] == []
    assert {k.split(".")[0] for k in state} == {
        "backbone",
        "input_proj",
        "transformer",
        "class_embed",
        "bbox_embed",
        "label_enc",
    }
    assert state["label_enc.weight"].shape == (NUM_CLASSES + 1, 32)
    assert state["transformer.tgt_embed.weight"].shape == (12, 32)
    assert state["transformer.level_embed"].shape == (4, 32)
    assert state["transformer.decoder.ref_point_head.layers.0.weight"].shape == (32, 64)
    # decoder heads shared across layers, encoder heads separate (TAO's DINO settings)
    assert model.class_embed[0] is model.class_embed[1] is model.transformer.decoder.class_embed[0]
    assert model.transformer.enc_out_class_embed is not model.class_embed[0]
    assert "transformer.refpoint_embed.weight" in _keys(build_dino(tiny_dino(), NUM_CLASSES, two_stage_type="no"))


def test_state_dict_roundtrip_strict():
    a = build_dino(tiny_dino(), NUM_CLASSES)
    b = build_dino(tiny_dino(), NUM_CLASSES)
    b.load_state_dict(a.state_dict(), strict=True)
