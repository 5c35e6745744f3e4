import math

import numpy as np
import pytest
import torch

from tao_pytorch.detr.criterion import SetCriterion, build_weight_dict, sigmoid_focal_loss, total_loss
from tao_pytorch.detr.matcher import HungarianMatcher
from tao_pytorch.detr.postprocess import PostProcess

LN2 = math.log(2.0)


class FixedMatcher(torch.nn.Module):
    """Query i <-> target i, so the loss values can be computed by hand."""

    def forward(self, outputs, targets):
        return [(torch.arange(len(t["labels"])), torch.arange(len(t["labels"]))) for t in targets]


def _hand_case():
    outputs = {
        "pred_logits": torch.zeros(1, 2, 1),  # p = 0.5 everywhere
        "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]]),
    }
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.4]])}]
    return outputs, targets


def test_focal_l1_giou_hand_values():
    outputs, targets = _hand_case()
    losses = SetCriterion(1, FixedMatcher(), {}, focal_alpha=0.25)(outputs, targets)
    # query 0 is the object: 0.25 * (1 - 0.5)^2 * ln 2; query 1 background: 0.75 * 0.5^2 * ln 2;
    # mean over the 2 queries x 2 queries / 1 box = the sum
    assert losses["loss_ce"].item() == pytest.approx(0.0625 * LN2 + 0.1875 * LN2, rel=1e-5)
    # |0.5-0.6| + |0.2-0.4|
    assert losses["loss_bbox"].item() == pytest.approx(0.3, rel=1e-5)
    assert losses["loss_xy"].item() == pytest.approx(0.1, rel=1e-5)
    assert losses["loss_hw"].item() == pytest.approx(0.2, rel=1e-5)
    # xyxy (0.4,0.4,0.6,0.6) vs (0.5,0.3,0.7,0.7): inter 0.02, union 0.10, hull 0.12
    assert losses["loss_giou"].item() == pytest.approx(1 - (0.2 - 0.02 / 0.12), rel=1e-5)
    assert losses["class_error"].item() == pytest.approx(0.0)


def test_normalised_by_number_of_boxes():
    outputs, targets = _hand_case()
    one = SetCriterion(1, FixedMatcher(), {})(outputs, targets)
    two = SetCriterion(1, FixedMatcher(), {})(outputs, targets, num_boxes=2.0)
    for k in ("loss_ce", "loss_bbox", "loss_giou"):
        assert two[k].item() == pytest.approx(one[k].item() / 2, rel=1e-6)
    # no boxes at all: normaliser clamped to 1, box losses 0
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    losses = SetCriterion(1, HungarianMatcher(), {})(outputs, empty)
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    assert losses["loss_ce"].item() == pytest.approx(2 * 0.1875 * LN2, rel=1e-5)


def test_sigmoid_focal_loss_alpha_negative_disables_weighting():
    x = torch.tensor([[[0.0]]])
    t = torch.tensor([[[1.0]]])
    assert sigmoid_focal_loss(x, t, 1.0, alpha=-1).item() == pytest.approx(0.25 * LN2, rel=1e-6)


def test_aux_enc_interm_keys_and_total():
    outputs, targets = _hand_case()
    aux = {k: v.clone() for k, v in outputs.items()}
    full = dict(outputs, aux_outputs=[aux], enc_outputs=dict(aux), interm_outputs=dict(aux))
    crit = SetCriterion(1, FixedMatcher(), {})
    losses = crit(full, targets)
    for suffix in ("", "_0", "_enc", "_interm"):
        assert losses["loss_ce" + suffix].item() == pytest.approx(losses["loss_ce"].item())
    wd = build_weight_dict(
        2.0,
        5.0,
        2.0,
        dec_layers=2,
        aux_loss=True,
        enc_suffix="_interm",
        enc_loss_coef=0.5,
        no_enc_box_loss=True,
        use_dn=True,
    )
    assert wd["loss_ce_interm"] == 1.0 and wd["loss_bbox_interm"] == 0.0 and wd["loss_giou_dn_0"] == 2.0
    assert "loss_ce_1" not in wd  # dec_layers - 1 aux layers
    expected = sum(losses[k] * w for k, w in wd.items() if k in losses)
    assert total_loss(losses, wd).item() == pytest.approx(expected.item())


def test_dn_losses_use_fixed_assignment():
    # 2 dn groups, max_gt 1: slots [pos0, neg0, pos1, neg1]
    known = {"pred_logits": torch.zeros(1, 4, 1), "pred_boxes": torch.tensor([[[0.6, 0.5, 0.2, 0.4]] * 4])}
    outputs, targets = _hand_case()
    outputs = dict(outputs, dn_meta={"pad_size": 4, "num_dn_group": 2, "output_known_lbs_bboxes": known})
    losses = SetCriterion(1, FixedMatcher(), {})(outputs, targets)
    assert losses["loss_bbox_dn"].item() == pytest.approx(0.0, abs=1e-6)  # positives hit their target
    # 2 positives + 2 negatives at p = 0.5, normalised by num_boxes * groups = 2
    assert losses["loss_ce_dn"].item() == pytest.approx((2 * 0.0625 + 2 * 0.1875) * LN2 * 4 / 4 / 2, rel=1e-5)
    none = SetCriterion(1, FixedMatcher(), {})(dict(outputs, dn_meta={"pad_size": 0, "num_dn_group": 1}), targets)
    assert none["loss_ce_dn"].item() == 0.0


def test_postprocess_topk_decode():
    logits = torch.full((1, 2, 3), -10.0)
    logits[0, 1, 2] = 2.0  # best: query 1, class 2
    logits[0, 0, 1] = 1.0  # second: query 0, class 1
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 1.0]]])
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    (det,) = PostProcess(num_select=2)(outputs, torch.tensor([[100, 200]]))
    np.testing.assert_allclose(det["scores"], torch.sigmoid(torch.tensor([2.0, 1.0])).numpy(), rtol=1e-6)
    assert det["labels"].tolist() == [2, 1]
    np.testing.assert_allclose(det["boxes"], [[0.0, 0.0, 100.0, 100.0], [80.0, 30.0, 120.0, 70.0]], atol=1e-4)
    res = PostProcess(num_select=100)(outputs, torch.tensor([[100, 200]]))
    assert res[0]["scores"].shape == (6,)  # capped at queries x classes
