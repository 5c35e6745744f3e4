"""Geometric augmentation of a segmentation sample (numpy), seed 004's `dataset.augmentation`.

A sample is {"image": uint8 (H, W, 3), "seg": segment-id map int32 (H, W) with 0 = nothing, or
"masks": bool (n, H, W) one per segment (COCO instance sources, whose masks may overlap)}. Every
step moves the image and its segmentation together: images resize with Pillow bilinear, labels
with Pillow nearest (detectron2's choice).

    train: ResizeShortestEdge(random choice of train_min_size, train_max_size)
           -> RandomCrop(train_crop_size) -> RandomFlip(horizontal, 0.5)        (SHI-Labs' unified mapper)
    test:  ResizeShortestEdge(test_min_size, test_max_size)

Randomness comes from the numpy Generator passed in (the dataset seeds one per item).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tao_core.processing.detr import resize_image
from tao_core.processing.oneformer import resize_nearest, shortest_edge_size
from tao_core.spec.access import spec_get_default
from tao_core.specs.oneformer_dataset import AugmentationConfig


def _label_keys(sample: dict) -> list[str]:
    return [k for k in ("seg", "masks") if sample.get(k) is not None]


def resize(sample: dict, size_hw: Sequence[int]) -> dict:
    out = dict(sample)
    out["image"] = resize_image(sample["image"], size_hw)
    for key in _label_keys(sample):
        out[key] = resize_nearest(sample[key], size_hw)
    return out


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    out = dict(sample)
    out["image"] = np.ascontiguousarray(sample["image"][top:top + height, left:left + width])
    for key in _label_keys(sample):
        out[key] = np.ascontiguousarray(sample[key][..., top:top + height, left:left + width])
    return out


def hflip(sample: dict) -> dict:
    out = dict(sample)
    out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
    for key in _label_keys(sample):
        out[key] = np.ascontiguousarray(sample[key][..., ::-1])
    return out


class ResizeShortestEdge:
    """Shorter side to one of `sizes` (drawn at random in training), longer side at most max_size."""

    def __init__(self, sizes: Sequence[int], max_size: int):
        self.sizes, self.max_size = [int(s) for s in sizes], int(max_size)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        short = self.sizes[0] if len(self.sizes) == 1 else int(rng.choice(self.sizes))
        return resize(sample, shortest_edge_size(sample["image"].shape[:2], short, self.max_size))

    def __repr__(self) -> str:
        return f"ResizeShortestEdge(sizes={self.sizes}, max_size={self.max_size})"


class RandomCrop:
    """A (h, w) crop (each side at most the image's) at a uniformly random place."""

    def __init__(self, size_hw: Sequence[int]):
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        img_h, img_w = sample["image"].shape[:2]
        h, w = min(img_h, self.size_hw[0]), min(img_w, self.size_hw[1])
        top, left = int(rng.integers(0, img_h - h + 1)), int(rng.integers(0, img_w - w + 1))
        return crop(sample, top, left, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size_hw={self.size_hw})"


class RandomFlip:
    def __init__(self, prob: float = 0.5):
        self.prob = float(prob)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return hflip(sample) if rng.random() < self.prob else sample

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob})"


class Compose:
    def __init__(self, steps: Sequence):
        self.steps = list(steps)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        for step in self.steps:
            sample = step(sample, rng)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(s) for s in self.steps) + ")"


def aug_field(aug: Any, name: str) -> Any:
    return spec_get_default(aug, name, AugmentationConfig)


def build_transforms(aug: Any, train: bool) -> Compose:
    """The augmentation pipeline of one split (see the module docstring)."""
    if train:
        return Compose([
            ResizeShortestEdge(aug_field(aug, "train_min_size"), aug_field(aug, "train_max_size")),
            RandomCrop(aug_field(aug, "train_crop_size")),
            RandomFlip(0.5),
        ])
    return Compose([ResizeShortestEdge([aug_field(aug, "test_min_size")], aug_field(aug, "test_max_size"))])
