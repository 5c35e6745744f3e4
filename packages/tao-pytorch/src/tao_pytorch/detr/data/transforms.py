"""DETR / DINO training and evaluation transforms.

Every transform is a callable `(image, target) -> (image, target)`. Until `Normalize`, the image
is a uint8 HxWx3 numpy array (a PIL image is accepted and converted) and the target holds numpy
arrays: boxes float32 (n, 4) xyxy in pixels, labels int64 (n,), area, iscrowd, size (h, w).
`Normalize` turns both into tensors (image float32 3xHxW, boxes cxcywh normalised by the
unpadded image size, DETR's convention); `FixedPad` runs after it on the tensor.

Resizing and normalisation call tao_core.processing.detr, the code the deploy engine uses, so
the evaluation input equals `preprocess_image(...)` bit for bit. Randomness comes from Python's
`random` module, which the DataLoader seeds differently in every worker.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from tao_core.processing.detr import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalisation,
    normalize_image,
    resize_image,
    resize_keep_ratio,
    xyxy_to_cxcywh,
)
from tao_core.spec.access import spec_get_default
from tao_core.specs.detr_common import AugmentationConfig

# Target fields with one entry per box: filtered together when boxes vanish.
PER_BOX_FIELDS = ("boxes", "labels", "area", "iscrowd")
SPLITS = ("train", "val", "test", "eval", "infer")


def _as_uint8(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError("transforms before Normalize expect a PIL image or a uint8 HxWx3 array")
    return image


def _keep_boxes(target: dict, keep: np.ndarray) -> dict:
    for field in PER_BOX_FIELDS:
        if field in target:
            target[field] = target[field][keep]
    return target


# ----------------------------------------------------------------------------- functional ops


def hflip(image: Any, target: dict) -> tuple[np.ndarray, dict]:
    """Mirror left-right: x1' = w - x2, x2' = w - x1."""
    image = _as_uint8(image)
    w = image.shape[1]
    target = dict(target)
    if "boxes" in target:
        b = target["boxes"]
        target["boxes"] = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1).astype(np.float32)
    return np.ascontiguousarray(image[:, ::-1]), target


def resize(image: Any, target: dict, size_hw: Sequence[int]) -> tuple[np.ndarray, dict]:
    """Resize to exactly size_hw (Pillow bilinear); boxes and areas scale with it."""
    image = _as_uint8(image)
    h, w = image.shape[:2]
    out = resize_image(image, size_hw)
    new_h, new_w = out.shape[:2]
    rw, rh = new_w / w, new_h / h
    target = dict(target)
    if "boxes" in target:
        target["boxes"] = (target["boxes"] * np.float32([rw, rh, rw, rh])).astype(np.float32)
    if "area" in target:
        target["area"] = (target["area"] * np.float32(rw * rh)).astype(np.float32)
    target["size"] = np.array([new_h, new_w], np.int64)
    return out, target


def crop(image: Any, target: dict, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, dict]:
    """Cut the region; boxes are shifted and clipped to it, boxes left with no area are dropped
    (with their labels, areas and crowd flags) and the areas of the rest recomputed."""
    image = _as_uint8(image)[top:top + height, left:left + width]
    target = dict(target)
    target["size"] = np.array(image.shape[:2], np.int64)
    if "boxes" in target:
        b = target["boxes"] - np.float32([left, top, left, top])
        b = np.clip(b, 0, np.float32([width, height, width, height]))
        target["boxes"] = b.astype(np.float32)
        target["area"] = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).astype(np.float32)
        target = _keep_boxes(target, (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    return np.ascontiguousarray(image), target


# ----------------------------------------------------------------------------- transforms


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class RandomHorizontalFlip:
    def __init__(self, prob: float = 0.5):
        self.prob = min(1.0, float(prob))

    def __call__(self, image, target):
        if random.random() < self.prob:
            return hflip(image, target)
        return _as_uint8(image), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


class RandomResize:
    """Shorter side to a size drawn from `sizes`, longer side capped at `max_size` (DETR rule,
    see tao_core.processing.detr.resize_keep_ratio). A single size makes it deterministic."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        if not len(sizes):
            raise ValueError("RandomResize needs at least one size")
        self.sizes, self.max_size = [int(s) for s in sizes], max_size

    def __call__(self, image, target):
        image = _as_uint8(image)
        size = self.sizes[0] if len(self.sizes) == 1 else random.choice(self.sizes)
        return resize(image, target, resize_keep_ratio(image.shape[:2], size, self.max_size))

    def __repr__(self) -> str:
        return f"RandomResize(sizes={self.sizes}, max_size={self.max_size})"


class FixedResize:
    """Resize to exactly (h, w), aspect not kept: matches a model exported with a fixed input."""

    def __init__(self, size_hw: Sequence[int]):
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))

    def __call__(self, image, target):
        return resize(image, target, self.size_hw)

    def __repr__(self) -> str:
        return f"FixedResize(size_hw={self.size_hw})"


class RandomSizeCrop:
    """Crop of random width in [min_size, min(W, max_size)] and height likewise, at a random
    place. An image smaller than min_size is cropped to at most its own size (DETR would fail)."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = int(min_size), int(max_size)

    def __call__(self, image, target):
        image = _as_uint8(image)
        img_h, img_w = image.shape[:2]
        w = random.randint(min(self.min_size, img_w), min(img_w, self.max_size))
        h = random.randint(min(self.min_size, img_h), min(img_h, self.max_size))
        top, left = random.randint(0, img_h - h), random.randint(0, img_w - w)
        return crop(image, target, top, left, h, w)

    def __repr__(self) -> str:
        return f"RandomSizeCrop(min_size={self.min_size}, max_size={self.max_size})"


class RandomCrop:
    """Crop of (h, w) (or the whole side, if the image is smaller) at a random place."""

    def __init__(self, size_hw: Sequence[int]):
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))

    def __call__(self, image, target):
        image = _as_uint8(image)
        img_h, img_w = image.shape[:2]
        h, w = min(img_h, self.size_hw[0]), min(img_w, self.size_hw[1])
        top, left = random.randint(0, img_h - h), random.randint(0, img_w - w)
        return crop(image, target, top, left, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size_hw={self.size_hw})"


class ResizeScale:
    """Large-scale jitter resize: draw s in [min_scale, max_scale] and fit the image, aspect
    kept, inside the (s*target_h, s*target_w) box (the resize half of LSJ; RandomCrop and
    FixedPad then bring it to exactly the target)."""

    def __init__(self, min_scale: float, max_scale: float, target_h: int, target_w: int):
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.target_h, self.target_w = int(target_h), int(target_w)

    def __call__(self, image, target):
        image = _as_uint8(image)
        img_h, img_w = image.shape[:2]
        scale = random.uniform(self.min_scale, self.max_scale)
        ratio = min(scale * self.target_w / img_w, scale * self.target_h / img_h)
        new_h, new_w = (max(1, int(v)) for v in np.round([img_h * ratio, img_w * ratio]))
        return resize(image, target, (new_h, new_w))

    def __repr__(self) -> str:
        return f"ResizeScale({self.min_scale}..{self.max_scale} of {self.target_h}x{self.target_w})"


class RandomSelect:
    """transforms1 with probability p, else transforms2."""

    def __init__(self, transforms1: Callable, transforms2: Callable, p: float = 0.5):
        self.transforms1, self.transforms2, self.p = transforms1, transforms2, p

    def __call__(self, image, target):
        if random.random() < self.p:
            return self.transforms1(image, target)
        return self.transforms2(image, target)

    def __repr__(self) -> str:
        return f"RandomSelect(p={self.p},\n  {self.transforms1!r},\n  {self.transforms2!r})"


class Normalize:
    """uint8 image -> float32 3xHxW tensor, (x/255 - mean) / std; target arrays -> tensors with
    boxes as cxcywh normalised by this (unpadded) image size."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image, target):
        image = _as_uint8(image)
        h, w = image.shape[:2]
        tensor = torch.from_numpy(normalize_image(image, self.mean, self.std))
        if target is None:
            return tensor, None
        out = dict(target)
        if "boxes" in out:
            # Clip first: float rounding in resize may push an edge a hair past the border.
            wh = np.float32([w, h, w, h])
            boxes = np.clip(np.asarray(out["boxes"], np.float32).reshape(-1, 4), 0, wh)
            out["boxes"] = torch.from_numpy((xyxy_to_cxcywh(boxes) / wh).astype(np.float32))
        for key, dtype in (("labels", torch.int64), ("iscrowd", torch.int64), ("area", torch.float32),
                           ("orig_size", torch.int64), ("size", torch.int64), ("image_id", torch.int64)):
            if key in out:
                out[key] = torch.as_tensor(np.asarray(out[key]), dtype=dtype).reshape(-1)
        return tensor, out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class FixedPad:
    """Zero-pad (after Normalize) so a landscape image becomes `short` x `long` (h x w) and a
    portrait one `long` x `short`: per-image shapes stay fixed, so worker-to-trainer buffers stop
    changing size (TAO's fix for CPU memory growth). Padding is at the bottom/right, target
    "size" keeps the unpadded (h, w) so the collate marks the padding in the mask. An image
    already larger than the target (a rare rounding overshoot of the resize) is left larger."""

    def __init__(self, short: int, long: int):
        self.short, self.long = int(short), int(long)

    def __call__(self, image: torch.Tensor, target):
        h, w = image.shape[-2:]
        th, tw = (self.long, self.short) if h > w else (self.short, self.long)
        th, tw = max(th, h), max(tw, w)
        if (th, tw) != (h, w):
            image = torch.nn.functional.pad(image, (0, tw - w, 0, th - h))
        return image, target

    def __repr__(self) -> str:
        return f"FixedPad(short={self.short}, long={self.long})"


# ----------------------------------------------------------------------------- builder


def aug_field(aug: Any, name: str) -> Any:
    """Field `name` of dataset.augmentation (OmegaConf node, dict or object); the schema's default
    (the DINO / Deformable DETR tables) when a partial config leaves it out."""
    return spec_get_default(aug, name, AugmentationConfig)


def build_transforms(aug: Any, split: str, input_size: Sequence[int] | None = None) -> Compose:
    """The pipeline of TAO's DINO / Deformable DETR `dataset.augmentation` for one split.

    train:  HFlip -> RandomSelect(RandomResize(scales, max) |
                                  RandomResize(train_random_resize) -> RandomSizeCrop(min, max)
                                  -> RandomResize(scales, max)) -> Normalize [-> FixedPad(max(scales), max)]
    train with fixed_random_crop=S (LSJ, ViT backbones):
            HFlip -> ResizeScale(0.1..2.0 of SxS) -> RandomCrop(S, S) -> Normalize -> FixedPad(S, S)
    val / test / eval / infer:
            RandomResize([test_random_resize], max) -> Normalize [-> FixedPad(test_random_resize, max)]
            or, with input_size=(h, w) (evaluate/inference input_height/width): FixedResize -> Normalize.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    normalize = Normalize(*normalisation(aug))
    scales = [int(s) for s in aug_field(aug, "scales")]
    max_size = int(aug_field(aug, "random_resize_max_size"))
    fixed_padding = bool(aug_field(aug, "fixed_padding"))

    if split == "train":
        flip = RandomHorizontalFlip(aug_field(aug, "horizontal_flip_prob"))
        lsj = aug_field(aug, "fixed_random_crop")
        if lsj:
            # LSJ pads to its square whatever fixed_padding says: the crop size is the model input.
            return Compose([flip, ResizeScale(0.1, 2.0, lsj, lsj), RandomCrop((lsj, lsj)), normalize,
                            FixedPad(lsj, lsj)])
        crop_then_resize = Compose([
            RandomResize(aug_field(aug, "train_random_resize")),
            RandomSizeCrop(aug_field(aug, "train_random_crop_min"), aug_field(aug, "train_random_crop_max")),
            RandomResize(scales, max_size),
        ])
        steps = [flip, RandomSelect(RandomResize(scales, max_size), crop_then_resize), normalize]
        if fixed_padding:
            steps.append(FixedPad(max(scales), max_size))
        return Compose(steps)

    if input_size is not None:
        return Compose([FixedResize(input_size), normalize])
    test_size = int(aug_field(aug, "test_random_resize"))
    steps = [RandomResize([test_size], max_size), normalize]
    if fixed_padding:
        steps.append(FixedPad(test_size, max_size))
    return Compose(steps)


def describe_eval_input(aug: Any, input_size: Sequence[int] | None = None) -> str:
    """The input geometry of build_transforms(aug, "val" / "eval", input_size), in words for the logs:
    validation during training and evaluate report it, so their mAPs are compared knowingly."""
    if input_size is not None:
        return f"resized to exactly {int(input_size[0])}x{int(input_size[1])} (H x W, aspect ratio not kept)"
    test_size = int(aug_field(aug, "test_random_resize"))
    max_size = int(aug_field(aug, "random_resize_max_size"))
    padded = f", padded to {test_size}x{max_size}" if bool(aug_field(aug, "fixed_padding")) else ""
    return f"shorter side resized to {test_size}, longer side at most {max_size}, aspect ratio kept{padded}"
