"""Swin + pixel decoder together: a state dict under SHI-Labs' names (`backbone.`,
`sem_seg_head.pixel_decoder.`) loads strictly, gradients reach the backbone, and the ONNX export
runs in ONNX Runtime with the PyTorch numbers."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from tao_core.specs.oneformer_model import OneFormerDecoderConfig, SemSegHeadConfig, SwinConfig
from tao_pytorch.backbones.swin import D2SwinTransformer
from tao_pytorch.oneformer.model.pixel_decoder import MSDeformAttnPixelDecoder

SWIN = SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=2, drop_path_rate=0.0)
HEAD = SemSegHeadConfig(convs_dim=32, mask_dim=32, transformer_enc_layers=1)
DECODER = OneFormerDecoderConfig(nheads=4, dropout=0.0)


class SemSegHead(nn.Module):
    def __init__(self, pixel_decoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder


class PixelLevel(nn.Module):
    """backbone + sem_seg_head.pixel_decoder, laid out as in SHI-Labs' OneFormer."""

    def __init__(self):
        super().__init__()
        self.backbone = D2SwinTransformer(SWIN)
        shapes = {n: (self.backbone.out_channels[n], self.backbone.strides[n]) for n in self.backbone.out_channels}
        self.sem_seg_head = SemSegHead(MSDeformAttnPixelDecoder(shapes, HEAD, DECODER))

    def forward(self, images):
        out = self.sem_seg_head.pixel_decoder(self.backbone(images))
        return (out.mask_features, *out.multi_scale_features)


def test_shi_state_dict_loads_strictly_and_gradients_reach_the_backbone():
    a, b = PixelLevel(), PixelLevel()
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in a.state_dict().items()}
    assert any(k.startswith("sem_seg_head.pixel_decoder.transformer.encoder.layers.0.") for k in state)
    assert "backbone.layers.3.blocks.1.attn.relative_position_bias_table" in state
    b.load_state_dict(state, strict=True)
    b.train()
    outs = b(torch.randn(1, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    assert b.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert b.sem_seg_head.pixel_decoder.mask_features.weight.grad.abs().sum() > 0


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = PixelLevel().eval()
    with torch.no_grad():  # non-trivial deformable sampling
        for p in model.sem_seg_head.pixel_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / "pixel_level.onnx"
    names = ["mask_features", "ms0", "ms1", "ms2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["inputs"], output_names=names,
                          opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"inputs": x.numpy()})
    with torch.no_grad():
        want = model(x)
    for name, g, w in zip(names, got, want):
        w = w.numpy()
        assert g.shape == w.shape, name
        assert np.abs(g - w).max() / np.abs(w).max() < 1e-4, name


def test_half_precision_inputs_run_in_float32():
    model = PixelLevel().eval()
    feats = {k: v.half() for k, v in model.backbone(torch.randn(1, 3, 64, 64)).items()}
    out = model.sem_seg_head.pixel_decoder(feats)
    assert out.mask_features.dtype == torch.float32


def test_checkpointed_backbone_in_the_pixel_level_module():
    m = PixelLevel()
    m.backbone = D2SwinTransformer(replace(SWIN, use_checkpoint=True))
    m.train()
    sum(o.mean() for o in m(torch.randn(1, 3, 64, 64))).backward()
    assert m.backbone.layers[0].blocks[0].attn.qkv.weight.grad is not None
