"""DETR-family (DINO, Deformable DETR) image pre-processing and prediction decoding, numpy only.

Pre-processing
    Two resize modes, both Pillow bilinear on the uint8 image (Pillow widens the filter when
    shrinking, i.e. it antialiases, as torchvision's PIL path does):
    * keep-ratio (`short_side`, `max_size`): training/eval transforms of the PyTorch tasks;
    * exact `size=(h, w)`: models exported with a fixed input shape (TensorRT engines,
      `input_width/input_height` in evaluate/inference), aspect ratio not kept.
    Then x/255, (x - mean) / std in float32, HWC -> CHW. Batches are zero-padded at the bottom
    and right (zero = the mean colour after normalisation) with a mask that is True on padding.

Decoding
    sigmoid over all query x class logits, top-`num_select` over the flattened Q*C scores,
    label = flat % C, query = flat // C, that query's cxcywh box -> xyxy -> times (w, h, w, h)
    of the original image. Labels are the COCO category ids (TAO does not remap them).

Clipping decision: boxes are clipped to the image by default, in both the PyTorch and the deploy
path. TAO's deploy decoder clips and its PyTorch one does not, so the two disagreed on boxes
that stick out of the frame. Clipping never hurts COCO mAP (ground-truth boxes are clipped to
the image when loaded, so a clipped prediction keeps its intersection with them and only
loses union: IoU can only grow) and KITTI labels / drawn boxes outside the image are
meaningless. `clip=False` reproduces TAO's PyTorch numbers exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from tao_core.spec.access import spec_get

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalisation(aug) -> tuple[list[float], list[float]]:
    """(mean, std) of a spec's dataset.augmentation (input_mean / input_std; ImageNet's when unset).

    The one place the choice is made: the training / evaluation transforms, export (its ONNX
    Runtime check and DeepStream config) and the deploy engines (calibration, evaluate,
    inference) all call it, so an engine never sees other numbers than its model was trained on.
    """
    mean, std = spec_get(aug, "input_mean"), spec_get(aug, "input_std")
    return list(mean or IMAGENET_MEAN), list(std or IMAGENET_STD)


# ----------------------------------------------------------------------------- resize


def resize_keep_ratio(image_hw: Sequence[int], short_side: int, max_size: int | None = None) -> tuple[int, int]:
    """(new_h, new_w) for a resize of the shorter side to `short_side`, aspect kept (DETR's rule).

    The rule, reproduced exactly so that sizes match reference DETR / TAO:
    1. if the longer side would exceed `max_size`, the target short side becomes
       `round(max_size * short / long)` (Python's round: halves go to the even integer);
    2. an image whose shorter side already equals the target is returned unchanged;
    3. otherwise the short side is the target and the long side is `int(target * long / short)`,
       i.e. truncated, not rounded.
    Because of (1)'s rounding, the long side can exceed `max_size` by at most `long/short/2`
    pixels (only possible when the aspect ratio is 2 or more).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got (h={h}, w={w})")
    size = int(short_side)
    if max_size is not None:
        short, long = float(min(h, w)), float(max(h, w))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize_image(image: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """uint8 HxWx3 -> uint8 resized to exactly size_hw, Pillow bilinear."""
    new_h, new_w = int(size_hw[0]), int(size_hw[1])
    if image.shape[:2] == (new_h, new_w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def _channel_stats(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size not in (1, 3):
        raise ValueError(f"{name} needs 1 or 3 values, got {list(arr)}")
    return np.broadcast_to(arr, (3,)).reshape(3, 1, 1)


def normalize_image(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW, (x/255 - mean) / std (same float32 op order as torchvision)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    chw = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    chw -= _channel_stats(mean, "mean")
    chw /= _channel_stats(std, "std")
    return chw


def target_size(image_hw: Sequence[int], size: Sequence[int] | None = None, short_side: int | None = None,
                max_size: int | None = None) -> tuple[int, int]:
    """The (h, w) an image is resized to: exact `size`, or the keep-ratio rule."""
    if (size is None) == (short_side is None):
        raise ValueError("give exactly one of size=(h, w) (exact resize) or short_side (keep ratio)")
    if size is not None:
        return int(size[0]), int(size[1])
    return resize_keep_ratio(image_hw, short_side, max_size)


def preprocess_image(image: np.ndarray, *, size: Sequence[int] | None = None, short_side: int | None = None,
                     max_size: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xhxw network input.

    size=(h, w): resize to exactly that (fixed-shape exported models);
    short_side (+ max_size): keep-ratio resize with `resize_keep_ratio`'s rule.
    """
    hw = target_size(image.shape[:2], size, short_side, max_size)
    return normalize_image(resize_image(image, hw), mean, std)


# ----------------------------------------------------------------------------- batching


def pad_batch(images: Sequence[np.ndarray], pad_to: Sequence[int] | None = None,
              valid_sizes: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack CxHxW arrays into one zero-padded (B, C, H, W) batch plus a (B, H, W) bool mask.

    The mask is True on padding (reference DETR's NestedTensor convention). H, W = the largest
    image, or `pad_to` (which must hold every image). `valid_sizes` gives each image's real (h, w)
    when it was already padded before batching (fixed padding): the mask then also covers that
    earlier padding.
    """
    if not len(images):
        raise ValueError("pad_batch needs at least one image")
    shapes = [im.shape for im in images]
    chans = {s[0] for s in shapes}
    if len(chans) != 1 or any(len(s) != 3 for s in shapes):
        raise ValueError(f"images must all be CxHxW with the same C, got shapes {shapes}")
    max_h, max_w = max(s[1] for s in shapes), max(s[2] for s in shapes)
    if pad_to is not None:
        if pad_to[0] < max_h or pad_to[1] < max_w:
            raise ValueError(f"pad_to={tuple(pad_to)} is smaller than the largest image ({max_h}, {max_w})")
        max_h, max_w = int(pad_to[0]), int(pad_to[1])
    batch = np.zeros((len(images), chans.pop(), max_h, max_w), dtype=images[0].dtype)
    mask = np.ones((len(images), max_h, max_w), dtype=bool)
    for i, im in enumerate(images):
        h, w = im.shape[1:]
        batch[i, :, :h, :w] = im
        vh, vw = (h, w) if valid_sizes is None else (int(valid_sizes[i][0]), int(valid_sizes[i][1]))
        mask[i, :vh, :vw] = False
    return batch, mask


def preprocess_batch(images: Sequence[np.ndarray], *, size: Sequence[int] | None = None,
                     short_side: int | None = None, max_size: int | None = None,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     pad_to: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`preprocess_image` on each image, then `pad_batch`. Returns (B,3,H,W) float32, (B,H,W) mask.

    With an exact `size` every image has the same shape and the mask is all False.
    """
    chw = [preprocess_image(im, size=size, short_side=short_side, max_size=max_size, mean=mean, std=std)
           for im in images]
    return pad_batch(chw, pad_to)


# ----------------------------------------------------------------------------- decoding


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: exp is only ever taken of -|x|.

    Computed in float32 at least (float64 stays float64), so fp16 engine outputs do not saturate.
    """
    x = np.asarray(x)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def topk_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values of a 1-D array, largest first; ties: lower index first.

    Deterministic (unlike torch.topk / np.argpartition on ties) and O(n) + O(k log k): a partition
    finds the k-th largest value, every element >= it is a candidate (all ties included), and only
    the candidates are stably sorted.
    """
    n = scores.size
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    order = np.argsort(-scores[cand], kind="stable")[:k]
    return cand[order].astype(np.int64)


def topk_sigmoid(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores): `topk_desc(sigmoid(logits), k)` and those scores, for a 1-D array,
    with the sigmoid evaluated on a few candidates instead of all Q*C logits (4x faster decode).

    Candidates: every logit above `low`, a value whose score is a few ulps below the score of
    the k-th largest logit. The float32 sigmoid is monotonic up to about one ulp, so no logit
    outside the candidates can score as high as the k best inside, ties at the boundary
    included; the result is the one of the full computation, bit for bit.
    """
    n = logits.size
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if k < n:
        kth = np.partition(logits, n - k)[n - k]
        top = sigmoid(kth)
        bound = top - 4 * np.spacing(top)
        step, low = 1.0, kth - 1.0
        while np.isfinite(low) and sigmoid(np.asarray(low, dtype=np.asarray(top).dtype)) >= bound:
            step *= 2.0
            low = kth - step
        cand = np.flatnonzero(logits > low) if np.isfinite(low) else np.arange(n)
    else:
        cand = np.arange(n)
    scores = sigmoid(logits[cand])
    order = topk_desc(scores, k)
    return cand[order].astype(np.int64), scores[order]


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.moveaxis(np.asarray(boxes), -1, 0)
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.moveaxis(np.asarray(boxes), -1, 0)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def decode_topk(pred_logits: np.ndarray, pred_boxes: np.ndarray, target_sizes: np.ndarray, num_select: int,
                clip: bool = True) -> list[dict[str, np.ndarray]]:
    """Turn raw DETR outputs into per-image detections (no NMS, as in DINO / TAO).

    pred_logits (B, Q, C) raw class logits; pred_boxes (B, Q, 4) cxcywh normalised to [0, 1];
    target_sizes (B, 2) original (h, w) of each image; num_select: detections kept per image
    (at most Q*C). Torch CPU tensors are accepted (anything np.asarray takes).

    Returns one dict per image: scores float32 (k,) descending (ties: lower query, then lower
    class first), labels int64 (k,), boxes float32 (k, 4) xyxy in pixels of the original image,
    clipped to it when `clip` (see the module docstring for why that is the default).
    """
    logits = np.asarray(pred_logits)
    boxes = np.asarray(pred_boxes)
    sizes = np.asarray(target_sizes, dtype=np.float64).reshape(-1, 2)
    if logits.ndim != 3 or boxes.shape != (*logits.shape[:2], 4) or len(sizes) != len(logits):
        raise ValueError(
            f"expected pred_logits (B, Q, C), pred_boxes (B, Q, 4), target_sizes (B, 2); got {logits.shape}, "
            f"{boxes.shape}, {np.shape(target_sizes)}"
        )
    if np.isnan(logits).any():
        raise ValueError("pred_logits contains NaN: the model's outputs are invalid (diverged training?)")
    num_images, _, num_classes = logits.shape
    flat_logits = logits.reshape(num_images, -1)
    out = []
    for b in range(num_images):
        flat, scores = topk_sigmoid(flat_logits[b], num_select)
        query, label = flat // num_classes, flat % num_classes
        h, w = sizes[b]
        scale = np.array([w, h, w, h])
        xyxy = cxcywh_to_xyxy(boxes[b, query].astype(np.float64)) * scale
        if clip:
            xyxy = np.clip(xyxy, 0.0, scale)
        out.append({"scores": scores.astype(np.float32), "labels": label.astype(np.int64),
                    "boxes": xyxy.astype(np.float32)})
    return out


def to_coco_results(decoded: Sequence[dict], image_ids: Sequence[int], conf_threshold: float = 0.0) -> list[dict]:
    """COCO result dicts ({image_id, category_id, bbox [x, y, w, h], score}) of `decode_topk` output.

    Detections scoring below `conf_threshold` are left out (TAO's evaluate.conf_threshold).
    Labels are written as category ids unchanged.
    """
    if len(decoded) != len(image_ids):
        raise ValueError(f"{len(decoded)} decoded images but {len(image_ids)} image ids")
    results = []
    for det, image_id in zip(decoded, image_ids, strict=True):
        keep = np.flatnonzero(np.asarray(det["scores"]) >= conf_threshold)
        xywh = np.asarray(det["boxes"], dtype=np.float64)[keep]
        xywh[:, 2:] -= xywh[:, :2]
        for j, k in enumerate(keep.tolist()):
            results.append({"image_id": int(image_id), "category_id": int(det["labels"][k]),
                            "bbox": [float(v) for v in xywh[j]], "score": float(det["scores"][k])})
    return results
