"""tao_core.processing.oneformer on hand-made logits with hand-computed answers (no torch here;
tao-pytorch's tests/oneformer/test_postprocess_vs_torch.py compares with torch and transformers)."""

import numpy as np
import pytest

from tao_core.metrics.coco import evaluate
from tao_core.processing import oneformer as pp

BIG = 20.0  # a logit whose sigmoid / softmax is 1 to float32 precision


def test_resize_bilinear_half_pixel_rule():
    x = np.array([[[0.0, 1.0]]], np.float32)
    # src = (dst + 0.5) * 0.5 - 0.5 -> -0.25 (clamped to 0), 0.25, 0.75, 1.25 (last row repeated)
    np.testing.assert_allclose(pp.resize_bilinear(x, (1, 4)), [[[0.0, 0.25, 0.75, 1.0]]])
    y = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert pp.resize_bilinear(y, (3, 4)) is not None and np.array_equal(pp.resize_bilinear(y, (3, 4)), y)
    # 4 -> 2 averages neighbour pairs: src = 0.5, 2.5
    np.testing.assert_allclose(pp.resize_bilinear(y, (3, 2))[0, 0], [0.5, 2.5])


def test_upsample_to_image_crops_the_padding():
    maps = np.zeros((1, 2, 4), np.float32)
    maps[0, :, 2:] = 1.0  # the right half is padding
    out = pp.upsample_to_image(maps, padded_hw=(2, 4), valid_hw=(2, 2), output_hw=(4, 4))
    np.testing.assert_allclose(out, 0.0)


def test_semantic_inference_hand_computed():
    # query 0: class 0 for sure, mask on the left pixel; query 1: class 1, mask on the right pixel
    cls = np.array([[BIG, 0, 0], [0, BIG, 0]], np.float32)
    masks = np.array([[[BIG, -BIG]], [[-BIG, BIG]]], np.float32)
    probs = pp.semantic_inference(cls, masks)
    np.testing.assert_allclose(probs, [[[1, 0]], [[0, 1]]], atol=1e-6)
    # a uniform class distribution over 2 classes + no-object: each class gets 1/3 of sigmoid(0) = 1/6
    probs = pp.semantic_inference(np.zeros((1, 3), np.float32), np.zeros((1, 1, 1), np.float32))
    np.testing.assert_allclose(probs[:, 0, 0], [1 / 6, 1 / 6], rtol=1e-6)


def _panoptic_case():
    # classes: 0 person (thing), 1 sky (stuff); column 2 of the logits = "no object"
    cls = np.array([
        [BIG, 0, 0],   # q0 person, left column
        [0, BIG, 0],   # q1 sky, middle column
        [0, BIG, 0],   # q2 sky again, right column: merged into q1's segment
        [0, 0, BIG],   # q3 no object: never kept
        [BIG, 0, 0],   # q4 person, but beaten everywhere: dropped by the overlap rule
    ], np.float32)
    masks = np.full((5, 2, 3), -BIG, np.float32)
    masks[0, :, 0] = BIG
    masks[1, :, 1] = BIG
    masks[2, :, 2] = BIG
    masks[3] = BIG
    masks[4, :, 0] = 1.0  # probability 0.73 < q0's 1.0 on the same pixels
    return cls, masks


def test_panoptic_inference_hand_computed():
    cls, masks = _panoptic_case()
    seg, info = pp.panoptic_inference(cls, masks, thing_ids={0}, object_mask_threshold=0.4, overlap_threshold=0.8)
    assert info == [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 1}]
    np.testing.assert_array_equal(seg, [[1, 2, 2], [1, 2, 2]])


def test_panoptic_thresholds():
    cls, masks = _panoptic_case()
    # every class score is ~1: a threshold of 1 keeps no query at all
    seg, info = pp.panoptic_inference(cls, masks, {0}, object_mask_threshold=1.0, overlap_threshold=0.8)
    assert info == [] and not seg.any()
    # a pixel where no kept query reaches probability 0.5 belongs to no segment
    masks[1, 0, 1] = -BIG
    seg, _ = pp.panoptic_inference(cls, masks, {0}, 0.4, 0.8)
    assert seg[0, 1] == 0
    # q0 loses half its pixels to a surer person query: 1/2 < overlap 0.8 -> dropped
    cls, masks = _panoptic_case()
    cls2 = np.concatenate([cls, [[BIG, 0, 0]]]).astype(np.float32)
    masks2 = np.concatenate([masks, np.full((1, 2, 3), -BIG, np.float32)])
    masks2[0, 0, 0], masks2[5, 0, 0] = 2.0, BIG  # q5 is surer than q0 on the top-left pixel
    seg, info = pp.panoptic_inference(cls2, masks2, {0}, 0.4, 0.8)
    assert [s["category_id"] for s in info] == [1, 0]
    assert seg[1, 0] == 0 and seg[0, 0] == info[1]["id"]


def test_instance_inference_topk_and_mask_scores():
    cls = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    masks = np.array([[[3.0, -1.0], [1.0, -2.0]], [[-1.0, -1.0], [2.0, 2.0]]], np.float32)
    out = pp.instance_inference(cls, masks, test_topk_per_image=3)
    sm = np.exp(cls) / np.exp(cls).sum(1, keepdims=True)
    order = [(0, 0), (1, 1), (1, 0)]  # (query, class) by class probability: .787, .576, .212
    np.testing.assert_array_equal(out["labels"], [c for _, c in order])
    sig = 1 / (1 + np.exp(-masks))
    ms0 = (sig[0][masks[0] > 0]).sum() / ((masks[0] > 0).sum() + 1e-6)
    ms1 = (sig[1][masks[1] > 0]).sum() / ((masks[1] > 0).sum() + 1e-6)
    np.testing.assert_allclose(out["scores"], [sm[0, 0] * ms0, sm[1, 1] * ms1, sm[1, 0] * ms1], rtol=1e-6)
    np.testing.assert_array_equal(out["masks"][1], masks[1] > 0)
    things = pp.instance_inference(cls, masks, 3, thing_ids=[1])
    np.testing.assert_array_equal(things["labels"], [1])
    assert len(pp.instance_inference(cls, masks, 100)["labels"]) == 4  # k is capped at Q x C


def test_instance_results_score_ap_one_through_coco_segm():
    """GT masks fed back as predictions: the RLE results evaluate to mask AP 1 in tao-core's COCO evaluator."""
    h, w = 32, 40
    gt_masks = np.zeros((3, h, w), bool)
    gt_masks[0, 2:12, 3:15] = True
    gt_masks[1, 15:30, 20:38] = True
    gt_masks[2, 5:20, 25:35] = True
    labels = np.array([0, 1, 0])
    results = pp.instances_to_coco({"masks": gt_masks, "scores": np.array([0.9, 0.8, 0.7], np.float32),
                                    "labels": labels}, image_id=1, category_ids=[3, 7])
    assert [r["category_id"] for r in results] == [3, 7, 3]
    from faster_coco_eval.core import mask as mask_api

    decoded = mask_api.decode([r["segmentation"] for r in results])
    np.testing.assert_array_equal(np.moveaxis(decoded, -1, 0).astype(bool), gt_masks)
    anns = [{"id": i + 1, "image_id": 1, "category_id": [3, 7][labels[i]], "segmentation": r["segmentation"],
             "area": float(gt_masks[i].sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0} for i, r in enumerate(results)]
    gt = {"images": [{"id": 1, "width": w, "height": h}], "annotations": anns,
          "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]}
    assert evaluate(gt, results, "segm")["mAP"] == pytest.approx(1.0)


def test_postprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="mode must be one of"):
        pp.postprocess("depth", np.zeros((1, 3)), np.zeros((1, 2, 2)), padded_hw=(2, 2), valid_hw=(2, 2), output_hw=(2, 2))
    with pytest.raises(ValueError, match=r"class logits \(Q, C\+1\) and mask logits \(Q, H, W\)"):
        pp.semantic_inference(np.zeros((2, 3)), np.zeros((3, 2, 2)))


def test_shortest_edge_size_is_detectron2s_rule():
    # 427 x 640 -> short side 800: the long side 640 * 800 / 427 = 1199.06 rounds to 1199
    assert pp.shortest_edge_size((427, 640), 800, 1333) == (800, 1199)
    assert pp.shortest_edge_size((640, 427), 800, 1333) == (1199, 800)
    # the long side would be 8000 > 1333: both sides scale down, 800 * 1333 / 8000 = 133.3 -> 133
    assert pp.shortest_edge_size((100, 1000), 800, 1333) == (133, 1333)
    # halves round up (int(x + 0.5)), unlike Python's round
    assert pp.shortest_edge_size((2, 5), 4, 100) == (4, 10) and pp.shortest_edge_size((4, 5), 2, 100) == (2, 3)


def test_resize_nearest_keeps_ids_and_dtype():
    ids = np.array([[1, 2], [3, 16777215]], np.int64)
    out = pp.resize_nearest(ids, (4, 4))
    assert out.dtype == np.int64 and set(np.unique(out).tolist()) == {1, 2, 3, 16777215}
    np.testing.assert_array_equal(out[:2, :2], 1)
    stack = pp.resize_nearest(np.stack([ids == 1, ids == 3]), (4, 6))
    assert stack.dtype == bool and stack.shape == (2, 4, 6) and stack[1, 3, 0] and not stack[1, 0, 0]


def test_normalisation_reads_pixel_mean_and_std_on_the_0_255_scale():
    mean, std = pp.normalisation({"pixel_mean": [255.0, 0.0, 127.5], "pixel_std": [255.0, 51.0, 25.5]})
    assert mean == pytest.approx([1.0, 0.0, 0.5]) and std == pytest.approx([1.0, 0.2, 0.1])
    assert pp.normalisation({})[0] == pytest.approx([m / 255 for m in pp.PIXEL_MEAN])
