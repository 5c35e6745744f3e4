"""OneFormer post-processing in numpy (no torch): shared by the PyTorch tasks and the deploy engines.

Inputs are one image's raw model outputs: class logits `mask_cls` (Q, C+1), the last column the
"no object" class, and mask logits `mask_pred` (Q, h, w). The three results follow SHI-Labs/
OneFormer's `semantic_inference`, `panoptic_inference` and `instance_inference`:

- semantic: per-class probability maps  sum_q softmax(cls)[q, :C] * sigmoid(mask)[q]  (C, H, W),
  the class map is their argmax;
- panoptic: queries whose best class is not "no object" and scores above object_mask_threshold
  compete per pixel (score * mask probability); a query keeps the pixels it wins where its own
  mask probability is >= 0.5, and is dropped when that is less than overlap_threshold of its
  own >= 0.5 area; all kept queries of one stuff class share one segment;
- instance: the top test_topk_per_image (query, class) pairs of softmax(cls)[:, :C] over Q x C,
  each with the binary mask (logit > 0) of its query and the score class prob * mean mask
  probability inside that mask.

The reference first brings the mask logits to the image (`upsample_to_image`: bilinear to the
padded network input, crop the unpadded part, bilinear to the original size: detectron2's
sem_seg_postprocess); `postprocess` runs that and one of the three. The bilinear resize equals
torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from tao_core.spec.access import spec_get

MODES = ("semantic", "instance", "panoptic")
# seed 004 "Data Config" recommended values, RGB on the 0..255 scale
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- pre-processing


def normalisation(dataset_cfg: Any) -> tuple[list[float], list[float]]:
    """(mean, std) on the 0..1 scale for tao_core.processing.detr.normalize_image, from the spec's
    dataset.pixel_mean / pixel_std (0..255 scale): the one place training, export and deploy read them."""
    mean = spec_get(dataset_cfg, "pixel_mean") or PIXEL_MEAN
    std = spec_get(dataset_cfg, "pixel_std") or PIXEL_STD
    return [float(m) / 255.0 for m in mean], [float(s) / 255.0 for s in std]


def shortest_edge_size(image_hw: Sequence[int], short_edge: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) with the shorter side at short_edge and the longer one at most max_size
    (detectron2's ResizeShortestEdge: scaled in float, each side rounded half up at the end)."""
    h, w = float(image_hw[0]), float(image_hw[1])
    scale = short_edge / min(h, w)
    new_h, new_w = (float(short_edge), scale * w) if h < w else (scale * h, float(short_edge))
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_nearest(labels: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of an integer / bool array (label maps, mask
    stacks) with Pillow's NEAREST, what detectron2 uses for segmentation (32-bit, so segment ids fit)."""
    from PIL import Image

    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if labels.shape[-2:] == (out_h, out_w):
        return labels
    flat = labels.reshape(-1, *labels.shape[-2:])
    out = np.empty((flat.shape[0], out_h, out_w), labels.dtype)
    for i, plane in enumerate(flat):
        img = Image.fromarray(plane.astype(np.int32))
        out[i] = np.asarray(img.resize((out_w, out_h), Image.NEAREST)).astype(labels.dtype)
    return out.reshape(*labels.shape[:-2], out_h, out_w)


# ----------------------------------------------------------------------------- resizing


def _axis_taps(in_n: int, out_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows (i0, i1) and the weight of i1 for each output row, torch's align_corners=False rule:
    src = (dst + 0.5) * in / out - 0.5, clamped below at 0."""
    scale = np.float32(in_n / out_n)
    src = np.maximum((np.arange(out_n, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), in_n - 1)
    i1 = np.where(i0 < in_n - 1, i0 + 1, i0)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Bilinear resize of the last two axes of a float array to size_hw (float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) != (out_h, out_w):
        y0, y1, wy = _axis_taps(in_h, out_h)
        x0, x1, wx = _axis_taps(in_w, out_w)
        rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]
        x = rows[..., x0] * (1 - wx) + rows[..., x1] * wx
    return x


def upsample_to_image(maps: np.ndarray, padded_hw: Sequence[int], valid_hw: Sequence[int],
                      output_hw: Sequence[int]) -> np.ndarray:
    """(N, h, w) network-resolution maps -> (N, H, W) on the original image: resize to the padded
    input size, keep the top-left valid_hw (the resized image without its padding), resize to output_hw."""
    up = resize_bilinear(maps, padded_hw)
    return resize_bilinear(up[..., : int(valid_hw[0]), : int(valid_hw[1])], output_hw)


# ----------------------------------------------------------------------------- shared pieces


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    # exp of a large positive argument would overflow to inf (harmless, but it warns): split by sign.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)


def _check(mask_cls: np.ndarray, mask_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask_cls, mask_pred = np.asarray(mask_cls), np.asarray(mask_pred)
    if mask_cls.ndim != 2 or mask_pred.ndim != 3 or mask_cls.shape[0] != mask_pred.shape[0]:
        raise ValueError(
            f"expected class logits (Q, C+1) and mask logits (Q, H, W) of one image, got {mask_cls.shape} and {mask_pred.shape}"
        )
    return mask_cls, mask_pred


# ----------------------------------------------------------------------------- the three results


def semantic_inference(mask_cls: np.ndarray, mask_pred: np.ndarray) -> np.ndarray:
    """(C, H, W) class probability maps: einsum('qc,qhw->chw', softmax(cls)[:, :C], sigmoid(masks))."""
    mask_cls, mask_pred = _check(mask_cls, mask_pred)
    probs = softmax(mask_cls)[:, :-1]
    q, h, w = mask_pred.shape
    return (probs.T @ sigmoid(mask_pred).reshape(q, h * w)).reshape(-1, h, w)


def panoptic_inference(mask_cls: np.ndarray, mask_pred: np.ndarray, thing_ids: Collection[int],
                       object_mask_threshold: float, overlap_threshold: float) -> tuple[np.ndarray, list[dict]]:
    """(segment-id map (H, W) int32, 0 = no segment; segments_info [{id, isthing, category_id}]),
    category_id the contiguous class index; thing_ids the contiguous indices of the thing classes."""
    mask_cls, mask_pred = _check(mask_cls, mask_pred)
    num_classes = mask_cls.shape[1] - 1
    probs = softmax(mask_cls)
    scores, labels = probs.max(axis=-1), probs.argmax(axis=-1)
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes = scores[keep], labels[keep]
    cur_masks = sigmoid(mask_pred[keep])
    h, w = mask_pred.shape[-2:]
    panoptic = np.zeros((h, w), np.int32)
    segments: list[dict] = []
    if cur_masks.shape[0] == 0:
        return panoptic, segments
    # First maximum wins ties, as torch.argmax does.
    owner = (cur_scores[:, None, None] * cur_masks).argmax(axis=0)
    things = {int(t) for t in thing_ids}
    stuff_segment: dict[int, int] = {}
    current = 0
    for k in range(cur_classes.shape[0]):
        pred_class = int(cur_classes[k])
        isthing = pred_class in things
        won = owner == k
        confident = cur_masks[k] >= 0.5
        mask_area, original_area = int(won.sum()), int(confident.sum())
        mask = won & confident
        if mask_area > 0 and original_area > 0 and mask.any():
            if mask_area / original_area < overlap_threshold:
                continue
            if not isthing:
                if pred_class in stuff_segment:
                    panoptic[mask] = stuff_segment[pred_class]
                    continue
                stuff_segment[pred_class] = current + 1
            current += 1
            panoptic[mask] = current
            segments.append({"id": current, "isthing": isthing, "category_id": pred_class})
    return panoptic, segments


def instance_inference(mask_cls: np.ndarray, mask_pred: np.ndarray, test_topk_per_image: int,
                       thing_ids: Collection[int] | None = None,
                       score_threshold: float | None = None) -> dict[str, np.ndarray]:
    """Top-k instances: {"masks" bool (K, H, W), "scores" float32 (K,), "labels" int64 (K,)}, best first.

    thing_ids: keep only those classes (the reference does so when panoptic evaluation is on);
    score_threshold: drop class scores at or below it (the reference's demo mode, object_mask_threshold).
    """
    mask_cls, mask_pred = _check(mask_cls, mask_pred)
    num_classes = mask_cls.shape[1] - 1
    flat = softmax(mask_cls)[:, :-1].reshape(-1)
    k = min(int(test_topk_per_image), flat.size)
    # Stable descending order: the k best (query, class) pairs, ties broken by the lower index.
    top = np.argsort(-flat, kind="stable")[:k]
    scores, labels, queries = flat[top], (top % num_classes).astype(np.int64), top // num_classes
    keep = np.ones(k, bool)
    if score_threshold is not None:
        keep &= scores > score_threshold
    if thing_ids is not None:
        keep &= np.isin(labels, np.fromiter((int(t) for t in thing_ids), np.int64))
    scores, labels, queries = scores[keep], labels[keep], queries[keep]
    logits = mask_pred[queries]
    masks = logits > 0
    flat_masks = masks.reshape(len(queries), -1)
    mask_scores = (sigmoid(logits).reshape(len(queries), -1) * flat_masks).sum(1) / (flat_masks.sum(1) + 1e-6)
    return {"masks": masks, "scores": (scores * mask_scores).astype(np.float32), "labels": labels}


def postprocess(mode: str, mask_cls: np.ndarray, mask_pred: np.ndarray, *, padded_hw: Sequence[int],
                valid_hw: Sequence[int], output_hw: Sequence[int], thing_ids: Collection[int] = (),
                object_mask_threshold: float = 0.4, overlap_threshold: float = 0.8,
                test_topk_per_image: int = 100, panoptic_on: bool = False) -> Any:
    """One image's result for `mode` on the original image (the reference's order: masks upsampled first).

    semantic -> (class map int64 (H, W), probabilities (C, H, W)); panoptic -> (id map, segments_info);
    instance -> instance_inference's dict (things only when panoptic_on, as the reference does).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    masks = upsample_to_image(mask_pred, padded_hw, valid_hw, output_hw)
    if mode == "semantic":
        probs = semantic_inference(mask_cls, masks)
        return probs.argmax(axis=0).astype(np.int64), probs
    if mode == "panoptic":
        return panoptic_inference(mask_cls, masks, thing_ids, object_mask_threshold, overlap_threshold)
    return instance_inference(mask_cls, masks, test_topk_per_image, thing_ids if panoptic_on else None)


# ----------------------------------------------------------------------------- COCO outputs


def instances_to_coco(instances: dict[str, np.ndarray], image_id: int, category_ids: Sequence[int]) -> list[dict]:
    """COCO results [{image_id, category_id, score, segmentation (compressed RLE)}] of instance_inference;
    category_ids maps a contiguous class index to its json category id."""
    from faster_coco_eval.core import mask as mask_api

    out = []
    for m, score, label in zip(instances["masks"], instances["scores"], instances["labels"], strict=True):
        rle = mask_api.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0]
        counts = rle["counts"]
        out.append({
            "image_id": int(image_id), "category_id": int(category_ids[int(label)]), "score": float(score),
            "segmentation": {"size": [int(v) for v in rle["size"]],
                             "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts},
        })
    return out


def panoptic_to_coco(segments_info: Sequence[dict], category_ids: Sequence[int]) -> list[dict]:
    """segments_info of panoptic_inference with json category ids (COCO panoptic prediction format)."""
    return [{"id": int(s["id"]), "category_id": int(category_ids[int(s["category_id"])]),
             "isthing": int(bool(s["isthing"]))} for s in segments_info]
