"""The PyTorch tasks decode with tao-core's numpy top-k, the engines' own: the same detections from
torch tensors of any float dtype as from the numpy arrays an engine returns."""

import numpy as np
import pytest
import torch

from tao_core.processing.detr import decode_topk as decode_numpy
from tao_pytorch.detr.postprocess import PostProcess


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_postprocess_is_the_numpy_decode(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 50, 7, generator=gen) * 3).to(dtype)
    # boxes partly outside the image so that clipping matters
    boxes = (torch.rand(2, 50, 4, generator=gen) * torch.tensor([1.2, 1.2, 0.8, 0.8]) - 0.1).to(dtype)
    sizes = torch.tensor([[480, 640], [300, 200]])
    got = PostProcess(num_select=30)({"pred_logits": logits, "pred_boxes": boxes}, sizes)
    expected = decode_numpy(logits.float().numpy(), boxes.float().numpy(), sizes.numpy(), 30)
    for g, exp in zip(got, expected, strict=True):
        for key in ("scores", "labels", "boxes"):
            np.testing.assert_array_equal(g[key], exp[key])
        assert g["scores"].dtype == np.float32 and g["labels"].dtype == np.int64
    h, w = sizes[1].tolist()
    assert got[1]["boxes"].min() >= 0 and got[1]["boxes"][:, [0, 2]].max() <= w and got[1]["boxes"][:, [1, 3]].max() <= h
