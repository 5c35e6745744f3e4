"""OneFormer point sampling, Hungarian matcher and set criterion: hand-computed cases, brute force
over all assignments, and transformers' OneFormerLoss under the same random points."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tao_core.specs.oneformer_model import OneFormerDecoderConfig
from tao_pytorch.detr.criterion import total_loss
from tao_pytorch.oneformer.model.criterion import (
    SetCriterion,
    build_criterion,
    build_weight_dict,
    dice_loss,
    sigmoid_ce_loss,
)
from tao_pytorch.oneformer.model.matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost
from tao_pytorch.oneformer.model.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

K = 3  # classes (+1 "no object")


def _rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def case(batch=2, queries=5, n_targets=(2, 3), hw=(16, 16), seed=0, aux=2, ctx=4, dim=8):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(batch, queries, K + 1, generator=g),
        "pred_masks": torch.randn(batch, queries, hw[0] // 2, hw[1] // 2, generator=g) * 3,
        "contrastive_logits": torch.randn(batch, ctx, dim, generator=g),
        "texts": torch.randn(batch, ctx, dim, generator=g),
        "aux_outputs": [
            {"pred_logits": torch.randn(batch, queries, K + 1, generator=g),
             "pred_masks": torch.randn(batch, queries, hw[0] // 2, hw[1] // 2, generator=g)}
            for _ in range(aux)
        ],
    }
    targets = [
        {"labels": torch.randint(0, K, (t,), generator=g),
         "masks": (torch.rand(t, *hw, generator=g) > 0.5).float()}
        for t in n_targets
    ]
    return outputs, targets


# ----------------------------------------------------------------------------- point sampling


def test_point_sample_reads_pixel_centres_and_interpolates():
    m = torch.arange(12.0).view(1, 1, 3, 4)  # value = 4 * row + col
    # pixel (row 1, col 2) centre is x = 2.5 / 4, y = 1.5 / 3; halfway to col 3 adds 0.5
    pts = torch.tensor([[[2.5 / 4, 1.5 / 3], [3.0 / 4, 1.5 / 3], [0.5 / 4, 0.5 / 3]]])
    out = point_sample(m, pts, align_corners=False)
    assert out.shape == (1, 1, 3)
    assert torch.allclose(out[0, 0], torch.tensor([6.0, 6.5, 0.0]), atol=1e-5)


def test_uncertain_points_pick_the_decision_boundary():
    logits = torch.full((2, 1, 8, 8), 10.0)
    logits[:, :, :, :2] = 0.0  # logit 0 (most uncertain) up to the centre of column 1: x <= 1.5 / 8
    torch.manual_seed(0)
    # 200 candidates: ~37 of them in that band, more than the 20 kept
    pts = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 20, 10.0, 1.0)
    assert pts.shape == (2, 20, 2) and (pts[..., 0] <= 1.5 / 8).all()
    # ratio 0.75: 15 by uncertainty, then 5 uniform
    pts = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 20, 10.0, 0.75)
    assert (pts[:, :15, 0] <= 1.5 / 8).all() and pts.shape == (2, 20, 2)
    with pytest.raises(ValueError, match="oversample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 20, 0.5, 0.75)


# ----------------------------------------------------------------------------- matcher


def test_pairwise_costs_by_hand():
    logits = torch.tensor([[0.0, 0.0], [2.0, -2.0]])  # 2 queries, 2 points
    targets = torch.tensor([[1.0, 0.0]])
    ce = batch_sigmoid_ce_cost(logits, targets)
    # query 0: p = 0.5 everywhere -> log 2; query 1: softplus(-2) for the positive, softplus(-2) for the negative
    sp = math.log1p(math.exp(-2.0))
    assert torch.allclose(ce, torch.tensor([[math.log(2.0)], [sp]]), atol=1e-6)
    dice = batch_dice_cost(logits, targets)
    s2 = 1 / (1 + math.exp(-2.0))
    want1 = 1 - (2 * s2 + 1) / (s2 + (1 - s2) + 1 + 1)
    assert torch.allclose(dice, torch.tensor([[1 - 2 / 3], [want1]]), atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_matcher_is_the_brute_force_optimum(seed):
    outputs, targets = case(batch=1, queries=5, n_targets=(3,), seed=seed, aux=0)
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    torch.manual_seed(seed)
    (qi, ti), = matcher(outputs, targets)
    torch.manual_seed(seed)
    coords = torch.rand(1, 64, 2)  # the points the matcher drew
    cost = matcher.image_cost(outputs["pred_logits"][0], outputs["pred_masks"][0], targets[0]["labels"],
                              targets[0]["masks"], coords)
    # the cost by its definition, pair by pair
    for q in range(5):
        for t in range(3):
            p = point_sample(outputs["pred_masks"][0, q][None, None], coords, align_corners=False).flatten()
            y = point_sample(targets[0]["masks"][t][None, None], coords, align_corners=False).flatten()
            c = (-2.0 * outputs["pred_logits"][0, q].softmax(-1)[targets[0]["labels"][t]]
                 + 5.0 * F.binary_cross_entropy_with_logits(p, y)
                 + 5.0 * (1 - (2 * (p.sigmoid() * y).sum() + 1) / (p.sigmoid().sum() + y.sum() + 1)))
            assert abs(cost[q, t] - c) < 1e-5
    best = min(sum(cost[q, t] for t, q in enumerate(perm)) for perm in itertools.permutations(range(5), 3))
    assert len(qi) == 3 and sorted(ti.tolist()) == [0, 1, 2] and list(qi) == sorted(qi.tolist())
    assert abs(cost[qi, ti].sum() - best) < 1e-5


def test_matcher_with_no_targets_and_nan():
    outputs, targets = case(batch=2, n_targets=(0, 2), aux=0)
    matcher = HungarianMatcher(num_points=16)
    (q0, t0), (q1, t1) = matcher(outputs, targets)
    assert len(q0) == len(t0) == 0 and len(q1) == 2
    outputs["pred_logits"][1, 0] = float("nan")  # a diverged query is matched only if nothing else is left
    (_, _), (q1, _) = matcher(outputs, targets)
    assert 0 not in q1.tolist()
    with pytest.raises(ValueError, match="all 0"):
        HungarianMatcher(0, 0, 0)


# ----------------------------------------------------------------------------- losses


def test_mask_losses_by_hand():
    logits = torch.zeros(2, 4)
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert abs(sigmoid_ce_loss(logits, labels, 2.0).item() - math.log(2.0)) < 1e-6
    # p = 0.5: mask 0: 1 - (2 + 1) / (2 + 2 + 1) = 0.4; mask 1: 1 - (4 + 1) / (2 + 4 + 1) = 2/7
    assert abs(dice_loss(logits, labels, 4.0).item() - (0.4 + 2 / 7) / 4) < 1e-6


def _criterion(**kw):
    cfg = OneFormerDecoderConfig(train_num_points=32, dec_layers=3, **kw)
    return build_criterion(cfg, K), cfg


def test_label_loss_by_hand():
    crit, _ = _criterion(no_object_weight=0.1)
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0], [0.0, 1.0, 0.0, 0.0]]])
    targets = [{"labels": torch.tensor([1]), "masks": torch.zeros(1, 4, 4)}]
    indices = [(torch.tensor([2]), torch.tensor([0]))]
    got = crit.loss_labels({"pred_logits": logits}, targets, indices, 1.0)["loss_ce"]
    ce = lambda row, c: -row.log_softmax(-1)[c]  # noqa: E731
    want = (0.1 * ce(logits[0, 0], 3) + 0.1 * ce(logits[0, 1], 3) + 1.0 * ce(logits[0, 2], 1)) / 1.2
    assert abs(got - want) < 1e-6


def test_contrastive_loss_by_hand():
    crit, _ = _criterion(contrastive_temperature=0.5)
    img = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])
    txt = torch.tensor([[[3.0, 0.0]], [[1.0, 1.0]]])
    got = crit.loss_contrastive({"contrastive_logits": img, "texts": txt}, None, None, 1.0)["loss_contrastive"]
    s = 2.0  # exp(log(1 / 0.5))
    r = 1 / math.sqrt(2)
    sim = torch.tensor([[1.0, r], [0.0, r]])  # sim[i, j] = cos(image i, text j)
    li = F.cross_entropy(sim * s, torch.arange(2))
    lt = F.cross_entropy(sim.t() * s, torch.arange(2))
    assert abs(got - (li + lt)) < 1e-6


def test_weights_follow_the_spec_and_state_keys():
    crit, cfg = _criterion()
    w = build_weight_dict(cfg)
    assert w["loss_ce"] == 2.0 and w["loss_mask"] == 5.0 and w["loss_dice"] == 5.0 and w["loss_contrastive"] == 0.5
    assert "loss_dice_1" in w and "loss_dice_2" not in w  # dec_layers - 1 aux sets
    assert set(crit.state_dict()) == {"empty_weight", "logit_scale"}
    assert crit.empty_weight.tolist() == [1.0, 1.0, 1.0, pytest.approx(0.1)]
    assert abs(crit.logit_scale.item() - math.log(1 / 0.07)) < 1e-6


def test_forward_keys_gradients_and_empty_images():
    crit, _ = _criterion()
    outputs, targets = case(n_targets=(0, 2))
    for k in ("pred_logits", "pred_masks", "contrastive_logits"):
        outputs[k].requires_grad_()
    torch.manual_seed(0)
    losses = crit(outputs, targets)
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_contrastive",
                           "loss_ce_0", "loss_mask_0", "loss_dice_0", "loss_ce_1", "loss_mask_1", "loss_dice_1"}
    weighted = crit.weighted(losses)
    assert abs(weighted["loss_mask"] - 5.0 * losses["loss_mask"]) < 1e-6
    total = total_loss(losses, crit.weight_dict)
    total.backward()
    for k in ("pred_logits", "pred_masks", "contrastive_logits"):
        assert outputs[k].grad is not None and outputs[k].grad.abs().sum() > 0, k
    assert crit.logit_scale.grad is not None
    # evaluation without text queries: no contrastive term
    no_text = {k: v for k, v in outputs.items() if k not in ("texts", "contrastive_logits")}
    assert "loss_contrastive" not in crit(no_text, targets)
    # a batch without any target: only "no object" classification, zero mask losses
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16)}] * 2
    losses = crit(no_text, empty)
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0 and losses["loss_ce"] > 0


def test_matches_transformers_oneformer_loss():
    from transformers.models.oneformer.modeling_oneformer import OneFormerHungarianMatcher, OneFormerLoss

    crit, cfg = _criterion(contrastive_temperature=0.07)
    hf = OneFormerLoss(
        num_classes=K,
        matcher=OneFormerHungarianMatcher(cfg.class_weight, cfg.mask_weight, cfg.dice_weight, cfg.train_num_points),
        weight_dict=build_weight_dict(cfg), eos_coef=cfg.no_object_weight, num_points=cfg.train_num_points,
        oversample_ratio=cfg.oversample_ratio, importance_sample_ratio=cfg.importance_sample_ratio,
        contrastive_temperature=cfg.contrastive_temperature,
    )
    outputs, targets = case(batch=2, queries=6, n_targets=(2, 3), hw=(24, 32), aux=2)
    torch.manual_seed(123)
    ours = crit(outputs, targets)
    torch.manual_seed(123)
    want = hf(
        masks_queries_logits=outputs["pred_masks"], class_queries_logits=outputs["pred_logits"],
        contrastive_queries_logits=outputs["contrastive_logits"], mask_labels=[t["masks"] for t in targets],
        class_labels=[t["labels"] for t in targets], text_queries=outputs["texts"],
        auxiliary_predictions=[{"masks_queries_logits": a["pred_masks"], "class_queries_logits": a["pred_logits"]}
                               for a in outputs["aux_outputs"]],
    )
    want = {k.replace("loss_cross_entropy", "loss_ce"): v for k, v in want.items()}
    assert set(ours) == set(want)
    worst = max(_rel(ours[k].detach(), want[k].detach()) for k in ours)
    assert worst < 1e-5, {k: _rel(ours[k].detach(), want[k].detach()) for k in ours}


def test_set_criterion_rejects_unknown_losses():
    with pytest.raises(ValueError, match="unknown losses"):
        SetCriterion(K, HungarianMatcher(), {}, 0.1, 16, 3.0, 0.75, losses=("boxes",))
