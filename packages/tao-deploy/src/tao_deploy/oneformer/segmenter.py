"""A OneFormer engine as a segmenter: images + task in, the raw last-stage outputs out.

The engine contract is `oneformer export`'s (tao_core.tasks.oneformer_outputs): inputs `images`
(B, 3, H, W) float32 and `task_tokens` (B, L) float32, outputs `pred_logits` (B, Q, C + 1) and
`pred_masks` (B, Q, H / 4, W / 4). H, W are the engine's (fixed at export): images are resized to
exactly H x W with tao-core's `network_input`, the function the PyTorch inference uses, so both
feed the same pixels. An ONNX marked INPUT_RANGE (ours) normalises inside; one without the mark
(TAO's export) is fed images normalised with dataset.pixel_mean / pixel_std here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np

from tao_core.errors import TaoUserError
from tao_core.processing.oneformer import instance_inference
from tao_core.tasks.oneformer_outputs import (
    INPUT_NAMES,
    INPUT_RANGE,
    OUTPUT_NAMES,
    SegmentationClasses,
    evaluation_input,
    inference_classes,
    instance_boxes,
    network_input,
    normalise_input,
    task_tokens,
)
from tao_deploy.detr.detector import require_engine  # noqa: F401  (the rule every engine task shares)
from tao_deploy.runtime import Engine, load_engine

logger = logging.getLogger(__name__)

# engine metadata: how `images` is fed (INPUT_RANGE, or "normalised" for TAO's own ONNX)
IMAGES_RANGE = "images_range"


def check_oneformer_io(input_shapes: dict[str, Sequence], output_names: Sequence[str], where: str) -> None:
    """A model off the OneFormer export contract is a one-line TaoUserError naming `where`."""
    if sorted(input_shapes) != sorted(INPUT_NAMES):
        raise TaoUserError(f"{where}: a OneFormer model has the inputs {list(INPUT_NAMES)} (from `tao model oneformer "
                           f"export`); this one has {sorted(input_shapes)}")
    images, tokens = input_shapes["images"], input_shapes["task_tokens"]
    if len(images) != 4 or images[1] not in (3, "3"):
        raise TaoUserError(f"{where}: input 'images' has shape {list(images)}; expected (batch, 3, height, width)")
    if len(tokens) != 2 or not isinstance(tokens[1], int) or tokens[1] <= 0:
        raise TaoUserError(f"{where}: input 'task_tokens' has shape {list(tokens)}; expected (batch, token length)")
    missing = [n for n in OUTPUT_NAMES if n not in output_names]
    if missing:
        raise TaoUserError(f"{where}: outputs {list(output_names)} lack {missing}; expected OneFormer's "
                           f"{list(OUTPUT_NAMES)}")


class EngineSegmenter:
    """Runs an engine: `run(images, mode)` -> (pred_logits, pred_masks) numpy per batch of uint8 RGB images.

    `batch_size` is clamped to the engine's profile; a final batch smaller than the profile's
    minimum is zero-padded and the padding's outputs dropped."""

    def __init__(self, engine: Engine | str | os.PathLike, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 batch_size: int = 1):
        self.engine = engine if isinstance(engine, Engine) else load_engine(engine)
        shapes = {name: spec["shape"] for name, spec in self.engine.inputs.items()}
        check_oneformer_io(shapes, self.engine.output_names, self.engine.source)
        images, tokens = self.engine.profile["images"], self.engine.profile["task_tokens"]
        self.size_hw = (int(images.opt[2]), int(images.opt[3]))
        self.task_len = int(tokens.opt[1])
        self.min_batch, self.max_batch = int(images.min[0]), int(images.max[0])
        self.batch_size = min(max(int(batch_size), self.min_batch), self.max_batch)
        self.normalise = self.engine.metadata.get(IMAGES_RANGE, INPUT_RANGE) != INPUT_RANGE
        self.mean, self.std = list(pixel_mean), list(pixel_std)

    @property
    def num_classes(self) -> int | None:
        """C of the engine's pred_logits (B, Q, C + 1), when fixed."""
        for spec in self.engine.metadata.get("output_specs", []):
            if spec["name"] == "pred_logits" and isinstance(spec["shape"][-1], int):
                return int(spec["shape"][-1]) - 1
        return None

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 3, H, W) float32 engine input of uint8 RGB images."""
        batch = np.stack([network_input(im, self.size_hw) for im in images])
        return normalise_input(batch, self.mean, self.std) if self.normalise else batch

    def preprocess_keep_aspect(self, images: Sequence[np.ndarray], min_size: int,
                               max_size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """(B, 3, H, W) engine input and each image's (h, w) inside it, resized as a checkpoint's
        evaluation resizes (tao_core.tasks.oneformer_outputs.evaluation_input), padded with the mean."""
        pairs = [evaluation_input(im, self.size_hw, min_size, max_size, self.mean) for im in images]
        batch = np.stack([x for x, _ in pairs])
        batch = normalise_input(batch, self.mean, self.std) if self.normalise else batch
        return batch, [hw for _, hw in pairs]

    def run_raw(self, batch: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred_logits, pred_masks) of a preprocessed batch, padded up to the engine's minimum batch."""
        n = len(batch)
        if n < self.min_batch:
            batch = np.concatenate([batch, np.zeros((self.min_batch - n, *batch.shape[1:]), batch.dtype)])
            tokens = np.concatenate([tokens, np.repeat(tokens[:1], self.min_batch - n, axis=0)])
        out = self.engine.run({"images": batch, "task_tokens": tokens})
        return out["pred_logits"][:n], out["pred_masks"][:n]

    def run(self, images: Sequence[np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray]:
        logits, masks = [], []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            lg, mk = self.run_raw(self.preprocess(chunk), task_tokens(mode, self.task_len, len(chunk)))
            logits.append(lg)
            masks.append(mk)
        return np.concatenate(logits), np.concatenate(masks)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> EngineSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def engine_classes(cfg, seg: EngineSegmenter) -> SegmentationClasses:
    """The spec's classes (tao_core.tasks.oneformer_outputs.inference_classes) for the engine's
    number of classes, named as the engine records them when it has one name per class."""
    num_classes = seg.num_classes or int(cfg.model.sem_seg_head.num_classes)
    classes = inference_classes(cfg, num_classes)
    names = seg.engine.class_names
    if len(names) == num_classes and names != classes.names:
        classes = dataclasses.replace(classes, names=list(names), source=f"the class names of {seg.engine.source}")
    return classes


def instance_decoder(top_k: int = 10):
    """(outputs, batch) -> per image {scores, labels, boxes xyxy} of the top-k instances at the
    network's mask resolution: how an FP16 / INT8 engine's agreement with its FP32 graph is
    measured (tao_deploy.engine.agreement compares boxes of the same class)."""

    def decode(outputs: dict[str, np.ndarray], batch) -> list[dict[str, np.ndarray]]:
        found = []
        for mask_cls, mask_pred in zip(outputs["pred_logits"], outputs["pred_masks"], strict=True):
            inst = instance_inference(mask_cls, mask_pred, top_k)
            found.append({"scores": inst["scores"], "labels": inst["labels"], "boxes": instance_boxes(inst["masks"])})
        return found

    return decode
