import itertools

import pytest
import torch

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou, inverse_sigmoid
from tao_pytorch.detr.matcher import HungarianMatcher


def test_box_conversions_roundtrip():
    b = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    torch.testing.assert_close(box_cxcywh_to_xyxy(b), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(b)), b)


def test_generalized_iou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    g = generalized_box_iou(a, b)[0]
    # overlap 1, union 7, hull 9 -> 1/7 - 2/9; identical -> 1; disjoint: 0 - (8 - 5) / 8
    torch.testing.assert_close(g, torch.tensor([1 / 7 - 2 / 9, 1.0, -3 / 8]))
    with pytest.raises(ValueError, match="x2 >= x1"):
        generalized_box_iou(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), a)


def test_inverse_sigmoid():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1:3].sigmoid(), x[1:3])


def brute_force(cost):
    q, t = cost.shape
    best, best_perm = None, None
    for perm in itertools.permutations(range(q), t):
        total = sum(cost[perm[j], j].item() for j in range(t))
        if best is None or total < best - 1e-9:
            best, best_perm = total, perm
    return best, best_perm


@pytest.mark.parametrize("seed", range(4))
def test_matcher_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    bs, nq, nc = 2, 5, 4
    outputs = {
        "pred_logits": torch.randn(bs, nq, nc, generator=g),
        "pred_boxes": torch.rand(bs, nq, 2, generator=g).repeat(1, 1, 2) * torch.tensor([1, 1, 0.5, 0.5])
        + torch.tensor([0, 0, 0.05, 0.05]),
    }
    targets = [
        {
            "labels": torch.randint(0, nc, (3,), generator=g),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.1], [0.5, 0.8, 0.1, 0.1]]),
        },
        {
            "labels": torch.randint(0, nc, (2,), generator=g),
            "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.7, 0.2, 0.3]]),
        },
    ]
    matcher = HungarianMatcher(2.0, 5.0, 2.0)
    indices = matcher(outputs, targets)
    cost = matcher.cost_matrix(outputs, targets)
    start = 0
    for b, (src, tgt) in enumerate(indices):
        n = len(targets[b]["labels"])
        c = cost[b, :, start : start + n]
        start += n
        got = sum(c[i, j].item() for i, j in zip(src.tolist(), tgt.tolist()))
        best, _ = brute_force(c)
        assert len(src) == n and sorted(tgt.tolist()) == list(range(n))
        assert got == pytest.approx(best, abs=1e-5)


def test_matcher_class_cost_is_focal_difference():
    p = torch.tensor([0.7])
    outputs = {"pred_logits": torch.logit(p).view(1, 1, 1), "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])}
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    cost = HungarianMatcher(1.0, 1.0, 1.0).cost_matrix(outputs, targets)
    pos = 0.25 * 0.3**2 * -torch.log(p)
    neg = 0.75 * 0.7**2 * -torch.log(1 - p)
    # L1 = 0 and GIoU = 1 for identical boxes
    torch.testing.assert_close(cost.view(1), (pos - neg) - 1.0, rtol=1e-5, atol=1e-6)


def test_matcher_empty_targets():
    outputs = {"pred_logits": torch.randn(2, 3, 4), "pred_boxes": torch.rand(2, 3, 4)}
    targets = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    assert all(len(i) == 0 and len(j) == 0 for i, j in HungarianMatcher()(outputs, targets))
