"""tao_core.processing.detr: sigmoid, top-k decoding and COCO results."""

import math

import numpy as np
import pytest

from tao_core.processing import detr


def _logit(p):
    return math.log(p / (1 - p))


def test_sigmoid_is_stable_and_exact_enough():
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0], np.float32)
    with np.errstate(over="raise"):
        s = detr.sigmoid(x)
    assert s.dtype == np.float32
    with np.errstate(over="ignore"):  # the naive float64 reference overflows to inf (-> 0), fine here
        ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(s, ref, rtol=1e-6, atol=0)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert detr.sigmoid(np.float16([2.0])).dtype == np.float32
    assert detr.sigmoid(np.float64([2.0])).dtype == np.float64


def test_decode_hand_computed_case():
    # 1 image, 2 queries, 3 classes; image 100 high, 200 wide.
    probs = np.array([[[0.1, 0.9, 0.2], [0.8, 0.05, 0.95]]])
    logits = np.vectorize(_logit)(probs)
    boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1]]])
    (out,) = detr.decode_topk(logits, boxes, [[100, 200]], num_select=3)
    # Flattened scores: q0 -> [.1, .9, .2], q1 -> [.8, .05, .95]; top-3 = .95 (q1 c2), .9 (q0 c1), .8 (q1 c0).
    np.testing.assert_allclose(out["scores"], [0.95, 0.9, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [2, 1, 0])
    q1 = [0.25 * 200 - 10, 0.75 * 100 - 5, 0.25 * 200 + 10, 0.75 * 100 + 5]  # [40, 70, 60, 80]
    q0 = [80, 30, 120, 70]
    np.testing.assert_allclose(out["boxes"], [q1, q0, q1], rtol=1e-6)
    assert out["scores"].dtype == np.float32 and out["labels"].dtype == np.int64 and out["boxes"].dtype == np.float32


def test_decode_ties_lower_query_then_lower_class_first():
    logits = np.zeros((1, 3, 2))  # every score 0.5
    logits[0, 2, 1] = 1.0
    boxes = np.tile([0.5, 0.5, 0.1, 0.1], (1, 3, 1))
    (out,) = detr.decode_topk(logits, boxes, [[10, 10]], num_select=4)
    np.testing.assert_array_equal(out["labels"], [1, 0, 1, 0])
    # flat order of the ties: (q0,c0)=0, (q0,c1)=1, (q1,c0)=2 after the single winner (q2,c1)=5.
    assert out["scores"][0] > out["scores"][1] == out["scores"][3]


def test_topk_desc_ties_across_partition_boundary():
    scores = np.array([0.3, 0.7, 0.7, 0.1, 0.7, 0.7])
    np.testing.assert_array_equal(detr.topk_desc(scores, 2), [1, 2])
    np.testing.assert_array_equal(detr.topk_desc(scores, 3), [1, 2, 4])
    np.testing.assert_array_equal(detr.topk_desc(scores, 10), [1, 2, 4, 5, 0, 3])
    assert detr.topk_desc(scores, 0).size == 0


def test_topk_desc_matches_full_sort_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, size=5000).astype(np.float32)  # many ties
    for k in (1, 17, 300, 4999, 5000):
        np.testing.assert_array_equal(detr.topk_desc(scores, k), np.argsort(-scores, kind="stable")[:k])


def test_decode_shapes_batch_and_num_select_clamped():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 7, 5)).astype(np.float32)
    boxes = rng.uniform(size=(3, 7, 4)).astype(np.float32)
    out = detr.decode_topk(logits, boxes, np.array([[10, 20], [30, 40], [50, 60]]), num_select=4)
    assert len(out) == 3
    for det in out:
        assert det["scores"].shape == (4,) and det["labels"].shape == (4,) and det["boxes"].shape == (4, 4)
        assert np.all(np.diff(det["scores"]) <= 0)
        assert det["labels"].max() < 5
    out = detr.decode_topk(logits, boxes, [[1, 1]] * 3, num_select=1000)
    assert out[0]["scores"].shape == (35,)


def test_decode_clip_behaviour():
    logits = np.array([[[5.0]]])
    boxes = np.array([[[0.9, 0.1, 0.4, 0.4]]])  # spans x 0.7..1.1, y -0.1..0.3
    size = [[50, 100]]
    clipped = detr.decode_topk(logits, boxes, size, num_select=1)[0]["boxes"][0]
    raw = detr.decode_topk(logits, boxes, size, num_select=1, clip=False)[0]["boxes"][0]
    np.testing.assert_allclose(raw, [70, -5, 110, 15], rtol=1e-6)
    np.testing.assert_allclose(clipped, [70, 0, 100, 15], rtol=1e-6)


def test_decode_bad_inputs():
    with pytest.raises(ValueError, match="expected"):
        detr.decode_topk(np.zeros((1, 2, 3)), np.zeros((1, 3, 4)), [[1, 1]], 1)
    with pytest.raises(ValueError, match="NaN"):
        detr.decode_topk(np.full((1, 1, 1), np.nan), np.zeros((1, 1, 4)), [[1, 1]], 1)


def test_to_coco_results_xywh_and_threshold():
    decoded = [
        {"scores": np.float32([0.9, 0.2]), "labels": np.int64([3, 1]), "boxes": np.float32([[10, 20, 30, 60], [0, 0, 1, 1]])},
        {"scores": np.float32([]), "labels": np.int64([]), "boxes": np.zeros((0, 4), np.float32)},
    ]
    res = detr.to_coco_results(decoded, [7, 8])
    assert len(res) == 2
    assert res[0] == {"image_id": 7, "category_id": 3, "bbox": [10.0, 20.0, 20.0, 40.0], "score": pytest.approx(0.9)}
    assert [r["score"] for r in detr.to_coco_results(decoded, [7, 8], conf_threshold=0.5)] == [pytest.approx(0.9)]
    assert detr.to_coco_results(decoded, [7, 8], conf_threshold=0.2)[-1]["category_id"] == 1  # inclusive
    with pytest.raises(ValueError):
        detr.to_coco_results(decoded, [7])


def test_box_format_round_trip():
    rng = np.random.default_rng(2)
    b = rng.uniform(size=(10, 4))
    np.testing.assert_allclose(detr.xyxy_to_cxcywh(detr.cxcywh_to_xyxy(b)), b, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_topk_sigmoid_equals_the_full_sigmoid_then_topk(dtype):
    """The decode scores only candidate logits; the result must be the full computation's, ties
    included (saturated scores of 1.0, repeated values, rounded logits)."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, k = int(rng.integers(1, 3000)), int(rng.integers(1, 400))
        x = (rng.standard_normal(n) * [0.1, 3, 30, 100][trial % 4]).astype(dtype)
        if trial % 3 == 0:
            x = np.round(x)  # many exact ties
        if trial % 5 == 0:
            x[: n // 2] = x[0]
        idx, scores = detr.topk_sigmoid(x, k)
        full = detr.sigmoid(x)
        np.testing.assert_array_equal(idx, detr.topk_desc(full, k))
        np.testing.assert_array_equal(scores, full[idx])


def test_normalisation_is_the_spec_or_imagenet():
    assert detr.normalisation({}) == (list(detr.IMAGENET_MEAN), list(detr.IMAGENET_STD))
    assert detr.normalisation({"input_mean": [0.5], "input_std": [0.25]}) == ([0.5], [0.25])
