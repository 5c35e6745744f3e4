"""tao_core.processing.oneformer (numpy) against torch computations of the same post-processing.

Two oracles:
- transformers 5.18.0's OneFormerImageProcessorPil post_process_semantic/panoptic_segmentation
  (an independent implementation; its panoptic rule differs from SHI-Labs/OneFormer's in three
  places, so the panoptic case uses logits where those cannot matter: every pixel has a query
  with mask probability >= 0.5 (transformers gives such pixels to a segment, SHI-Labs to none),
  class scores ~1 (transformers applies the 0.5 mask threshold to score * probability), and
  nothing fused on its side (its fused segments reuse ids), the class of every pixel compared);
- a direct torch transcription of SHI-Labs/OneFormer's semantic / panoptic / instance inference
  (test_topk_per_image, mask scores) and of detectron2's sem_seg_postprocess resize chain.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tao_core.processing import oneformer as pp

transformers_pil = pytest.importorskip("transformers.models.oneformer.image_processing_pil_oneformer")

Q, C, H, W = 12, 7, 24, 20
THINGS = (0, 1, 2, 3)


def _logits(seed, saturate=False):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(Q, C + 1, generator=g) * 3
    masks = torch.randn(Q, H, W, generator=g) * 4
    if saturate:
        # every pixel gets one confident query: the two panoptic rules then agree
        owner = torch.randint(0, Q, (H, W), generator=g)
        masks = torch.where(owner[None] == torch.arange(Q)[:, None, None], masks.abs() + 6, masks - 8)
        # one sure class per query: transformers tests ">= 0.5" on score * probability, SHI-Labs on the
        # probability alone, which agree when the scores are ~1
        cls = torch.randn(Q, C + 1, generator=g) * 0.1
        cls[torch.arange(Q), torch.randint(0, C, (Q,), generator=g)] += 15
    return cls, masks


class _Outputs:
    def __init__(self, cls, masks):
        self.class_queries_logits, self.masks_queries_logits = cls[None], masks[None]


def _processor():
    proc = transformers_pil.OneFormerImageProcessorPil.__new__(transformers_pil.OneFormerImageProcessorPil)
    proc.metadata = {"thing_ids": list(THINGS)}
    proc.class_info_file = "custom"
    return proc


def test_resize_equals_torch_interpolate():
    x = torch.randn(3, 13, 17)
    for size in [(32, 40), (7, 5), (13, 17), (26, 9)]:
        ref = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0].numpy()
        np.testing.assert_allclose(pp.resize_bilinear(x.numpy(), size), ref, rtol=1e-5, atol=1e-5)


def test_upsample_to_image_equals_sem_seg_postprocess_chain():
    masks = torch.randn(4, 8, 10)
    padded, valid, out = (32, 40), (30, 37), (61, 75)
    up = F.interpolate(masks[None], size=padded, mode="bilinear", align_corners=False)[0]
    ref = F.interpolate(up[None, :, : valid[0], : valid[1]], size=out, mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(pp.upsample_to_image(masks.numpy(), padded, valid, out), ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_semantic_equals_transformers(seed):
    cls, masks = _logits(seed)
    ref = _processor().post_process_semantic_segmentation(_Outputs(cls, masks), return_segmentation_scores=True)[0]
    probs = pp.semantic_inference(cls.numpy(), masks.numpy())
    np.testing.assert_allclose(probs, ref.segmentation_scores.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(0), ref.segmentation.numpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_panoptic_equals_transformers_where_the_rules_agree(seed):
    cls, masks = _logits(seed, saturate=True)
    # No fusing on the transformers side (its fused segments reuse ids): the class of every pixel
    # is the same either way, and thing segments (never fused) must match one to one.
    ref = _processor().post_process_panoptic_segmentation(
        _Outputs(cls, masks), threshold=0.4, overlap_mask_area_threshold=0.3, label_ids_to_fuse=set()
    )[0]
    seg, info = pp.panoptic_inference(cls.numpy(), masks.numpy(), THINGS, 0.4, 0.3)
    assert any(s["isthing"] for s in info) and any(not s["isthing"] for s in info), "the case must hold both kinds"
    ref_seg = ref["segmentation"].numpy().astype(np.int64)
    ref_cls = {s["id"]: s["label_id"] for s in ref["segments_info"]}
    our_cls = {s["id"]: s["category_id"] for s in info}
    ref_class_map = np.vectorize(lambda i: ref_cls.get(int(i), -1))(ref_seg)
    our_class_map = np.vectorize(lambda i: our_cls.get(int(i), -1))(seg)
    np.testing.assert_array_equal(our_class_map, ref_class_map)
    thing = np.isin(our_class_map, THINGS)
    pairs = set(zip(seg[thing].tolist(), ref_seg[thing].tolist(), strict=True))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


# ----------------------------------------------------------------------------- SHI-Labs transcription


def _torch_panoptic(mask_cls, mask_pred, things, object_mask_threshold, overlap_threshold):
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    mask_pred = mask_pred.sigmoid()
    keep = labels.ne(mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_pred[keep]
    panoptic = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32)
    info, stuff, seg_id = [], {}, 0
    if cur_masks.shape[0] == 0:
        return panoptic, info
    ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    for k in range(cur_classes.shape[0]):
        c = cur_classes[k].item()
        isthing = c in things
        area, orig = (ids == k).sum().item(), (cur_masks[k] >= 0.5).sum().item()
        m = (ids == k) & (cur_masks[k] >= 0.5)
        if area > 0 and orig > 0 and m.sum().item() > 0:
            if area / orig < overlap_threshold:
                continue
            if not isthing:
                if c in stuff:
                    panoptic[m] = stuff[c]
                    continue
                stuff[c] = seg_id + 1
            seg_id += 1
            panoptic[m] = seg_id
            info.append({"id": seg_id, "isthing": isthing, "category_id": c})
    return panoptic, info


def _torch_instance(mask_cls, mask_pred, topk, things=None):
    num_classes = mask_cls.shape[-1] - 1
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(num_classes).unsqueeze(0).repeat(mask_cls.shape[0], 1).flatten(0, 1)
    top_scores, idx = scores.flatten(0, 1).topk(topk, sorted=True)
    top_labels, m = labels[idx], mask_pred[idx // num_classes]
    if things is not None:
        keep = torch.tensor([lab.item() in things for lab in top_labels], dtype=torch.bool)
        top_scores, top_labels, m = top_scores[keep], top_labels[keep], m[keep]
    binary = (m > 0).float()
    mask_scores = (m.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return binary.bool(), top_scores * mask_scores, top_labels


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("thresholds", [(0.4, 0.8), (0.1, 0.3)])
def test_panoptic_equals_shi_labs_rule(seed, thresholds):
    cls, masks = _logits(seed)
    ref_seg, ref_info = _torch_panoptic(cls, masks, THINGS, *thresholds)
    seg, info = pp.panoptic_inference(cls.numpy(), masks.numpy(), THINGS, *thresholds)
    assert info == ref_info
    np.testing.assert_array_equal(seg, ref_seg.numpy())


@pytest.mark.parametrize("things", [None, THINGS])
def test_instance_equals_shi_labs_rule(things):
    cls, masks = _logits(5)
    ref_masks, ref_scores, ref_labels = _torch_instance(cls, masks, 20, things)
    out = pp.instance_inference(cls.numpy(), masks.numpy(), 20, things)
    np.testing.assert_array_equal(out["labels"], ref_labels.numpy())
    np.testing.assert_allclose(out["scores"], ref_scores.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(out["masks"], ref_masks.numpy())


def test_postprocess_semantic_matches_reference_order():
    """postprocess('semantic') = masks upsampled to the image first, then the einsum and argmax."""
    cls, masks = _logits(7)
    padded, valid, out = (96, 80), (90, 77), (45, 38)
    up = F.interpolate(masks[None], size=padded, mode="bilinear", align_corners=False)[0]
    up = F.interpolate(up[None, :, : valid[0], : valid[1]], size=out, mode="bilinear", align_corners=False)[0]
    ref = torch.einsum("qc,qhw->chw", F.softmax(cls, -1)[:, :-1], up.sigmoid())
    class_map, probs = pp.postprocess("semantic", cls.numpy(), masks.numpy(), padded_hw=padded, valid_hw=valid, output_hw=out)
    np.testing.assert_allclose(probs, ref.numpy(), rtol=1e-4, atol=1e-5)
    assert (class_map == ref.argmax(0).numpy()).mean() > 0.999
