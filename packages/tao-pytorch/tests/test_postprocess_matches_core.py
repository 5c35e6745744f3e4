"""The torch top-k decode is pinned to tao-core's numpy decode, which the engines use."""

import numpy as np
import pytest
import torch

from tao_core.processing.detr import decode_topk as decode_numpy
from tao_pytorch.detr.postprocess import PostProcess, decode_topk


@pytest.mark.parametrize("clip", [True, False])
def test_torch_and_numpy_decode_agree(clip):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, 7, generator=gen) * 3
    # boxes partly outside the image so that clipping matters
    boxes = torch.rand(2, 50, 4, generator=gen) * torch.tensor([1.2, 1.2, 0.8, 0.8]) - 0.1
    sizes = torch.tensor([[480, 640], [300, 200]])
    post = PostProcess(num_select=30)
    post_out = post({"pred_logits": logits, "pred_boxes": boxes}, sizes) if clip else None
    scores, labels, out_boxes = decode_topk(logits, boxes, sizes, 30, clip=clip)
    expected = decode_numpy(logits.numpy(), boxes.numpy(), sizes.numpy(), 30, clip=clip)
    for i, exp in enumerate(expected):
        np.testing.assert_allclose(scores[i].numpy(), exp["scores"], rtol=1e-6)
        np.testing.assert_array_equal(labels[i].numpy(), exp["labels"])
        np.testing.assert_allclose(out_boxes[i].numpy(), exp["boxes"], rtol=1e-5, atol=1e-3)
        if clip:
            np.testing.assert_allclose(post_out[i]["boxes"].numpy(), exp["boxes"], rtol=1e-5, atol=1e-3)
            h, w = sizes[i].tolist()
            assert exp["boxes"].min() >= 0 and exp["boxes"][:, [0, 2]].max() <= w and exp["boxes"][:, [1, 3]].max() <= h
