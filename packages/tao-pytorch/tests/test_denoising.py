import torch
from model_helpers import NUM_CLASSES, padded_batch, tiny_dino

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy, inverse_sigmoid
from tao_pytorch.dino.model import build_dino
from tao_pytorch.dino.model.dn_components import dn_attention_mask, num_dn_groups, prepare_for_cdn


def _targets():
    return [
        {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1], [0.3, 0.4, 0.1, 0.2]])},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.1]])},
    ]


def test_group_count_rule():
    assert num_dn_groups(100, 3) == 200 // 6
    assert num_dn_groups(4, 3) == 8  # < 100 pairs: kept
    assert num_dn_groups(100, 0) == 1
    assert num_dn_groups(100, 500) == 1


def test_attention_mask_structure():
    pad, nq, groups = 12, 5, 3  # group size 4 (2 positives + 2 negatives)
    m = dn_attention_mask(pad, nq, groups)
    assert m.shape == (17, 17)
    assert m[pad:, :pad].all()  # matching queries never see dn queries
    assert not m[pad:, pad:].any()  # ... but see each other
    assert not m[:pad, pad:].any()  # dn queries see the matching queries
    for g in range(groups):
        rows = slice(4 * g, 4 * g + 4)
        own = torch.zeros(pad, dtype=torch.bool)
        own[4 * g : 4 * g + 4] = True
        assert (m[rows, :pad] == ~own).all()  # only their own group among dn queries


def test_prepare_for_cdn_layout_and_noise():
    torch.manual_seed(0)
    label_enc = torch.nn.Embedding(NUM_CLASSES + 1, 8)
    t = _targets()
    # no noise: slots hold exactly the ground truth
    lab, box, mask, meta = prepare_for_cdn(t, 2, 0.0, 0.0, 10, NUM_CLASSES, 8, label_enc, training=True)
    groups = num_dn_groups(2, 2)
    assert meta == {"pad_size": 2 * 2 * groups, "num_dn_group": groups}
    assert lab.shape == (2, meta["pad_size"], 8) and box.shape == (2, meta["pad_size"], 4)
    assert mask.shape == (meta["pad_size"] + 10,) * 2
    for g in range(groups):
        for copy in (2 * g, 2 * g + 1):  # positives, negatives
            base = copy * 2
            torch.testing.assert_close(box[0, base : base + 2], inverse_sigmoid(t[0]["boxes"], 1e-3))
            torch.testing.assert_close(lab[0, base : base + 2], label_enc(t[0]["labels"]))
            torch.testing.assert_close(box[1, base], inverse_sigmoid(t[1]["boxes"][0], 1e-3))
            assert (box[1, base + 1] == 0).all() and (lab[1, base + 1] == 0).all()  # padding slot
    # box noise: positives move each corner by < half the size, negatives by >= half the size
    _, box, _, meta = prepare_for_cdn(t, 2, 0.0, 1.0, 10, NUM_CLASSES, 8, label_enc, training=True)
    orig = box_cxcywh_to_xyxy(t[0]["boxes"])
    half = torch.cat([t[0]["boxes"][:, 2:], t[0]["boxes"][:, 2:]], 1) / 2
    for copy in range(2 * groups):
        noised = box[0, copy * 2 : copy * 2 + 2].sigmoid()
        moved = (box_cxcywh_to_xyxy(noised) - orig).abs()
        if copy % 2 == 0:
            assert (moved < half + 1e-4).all()
        else:
            # a negative whose corners crossed collapses to a ~0-size box (as in the reference)
            collapsed = (noised[:, 2:] < 2e-3).any(-1, keepdim=True)
            assert ((moved > half - 1e-4) | collapsed).all()
    assert prepare_for_cdn(t, 2, 0.5, 1.0, 10, NUM_CLASSES, 8, label_enc, training=False) == (None,) * 4


def test_matching_queries_do_not_see_dn_queries():
    """Different dn noise must not change the matching queries' predictions."""
    model = build_dino(tiny_dino(dn_number=3), NUM_CLASSES).train()
    x = padded_batch()
    torch.manual_seed(1)
    a = model(x, _targets())
    torch.manual_seed(2)
    b = model(x, _targets())
    assert a["dn_meta"]["pad_size"] > 0
    assert not torch.allclose(
        a["dn_meta"]["output_known_lbs_bboxes"]["pred_boxes"], b["dn_meta"]["output_known_lbs_bboxes"]["pred_boxes"]
    )
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"])
    torch.testing.assert_close(a["pred_boxes"], b["pred_boxes"])
