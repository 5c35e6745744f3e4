"""A DINO / Deformable DETR engine as a detector: images in, decoded detections out.

The engine contract is TAO's export: one input (B, 3, H, W) float32 (`inputs`), outputs
`pred_logits` (B, Q, C) raw logits and `pred_boxes` (B, Q, 4) normalised cxcywh. H, W are the
engine's (fixed at export), so images are resized to exactly H x W, as TAO's deploy does.
Pre- and post-processing are tao_core.processing.detr's, the functions the PyTorch tasks use:
preprocess_batch (Pillow bilinear to H x W, /255, (x - mean) / std) and decode_topk (sigmoid,
top-num_select over query x class, boxes to original-image pixels, clipped).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from tao_core.data.images import load_image_rgb
from tao_core.errors import SpecError, TaoUserError
from tao_core.io.paths import require_file
from tao_core.processing.detr import decode_topk, preprocess_batch, preprocess_image
from tao_deploy.runtime import Engine, load_engine

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("pred_logits", "pred_boxes")


def image_preprocessor(size_hw: Sequence[int], mean: Sequence[float], std: Sequence[float]):
    """path -> (3, H, W) float32 network input: what calibration reads images with."""

    def preprocess(path) -> np.ndarray:
        return preprocess_image(load_image_rgb(path), size=size_hw, mean=mean, std=std)

    return preprocess


def raw_decoder(num_select: int):
    """(outputs, batch) -> decode_topk detections in the batch's H x W pixels: how the engine's
    agreement with its FP32 graph is measured (tao_deploy.engine.agreement)."""

    def decode(outputs: dict[str, np.ndarray], batch: np.ndarray) -> list[dict[str, np.ndarray]]:
        sizes = np.array([batch.shape[2:4]] * len(batch))
        return decode_topk(outputs["pred_logits"], outputs["pred_boxes"], sizes, num_select)

    return decode


def check_detr_io(input_shapes: dict[str, Sequence], output_names: Sequence[str], where: str) -> str:
    """The name of the single (B, 3, H, W) input; a model off the DETR contract is an error."""
    if len(input_shapes) != 1:
        raise TaoUserError(
            f"{where}: a DINO / Deformable DETR model has one input (B, 3, H, W); this one has {sorted(input_shapes)}"
        )
    (name, shape), = input_shapes.items()
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise TaoUserError(f"{where}: input {name!r} has shape {list(shape)}; expected (batch, 3, height, width)")
    missing = [n for n in OUTPUT_NAMES if n not in output_names]
    if missing:
        raise TaoUserError(
            f"{where}: outputs {list(output_names)} lack {missing}; expected TAO's DETR export "
            f"(pred_logits, pred_boxes), e.g. from `tao model dino export`"
        )
    return name


def require_engine(section, task: str) -> str:
    """`<task>.trt_engine`, which must exist; a spec naming only a checkpoint is pointed to tao model."""
    engine = section.get("trt_engine")
    if not engine:
        hint = ""
        if section.get("checkpoint"):
            hint = f"; {task}.checkpoint is a PyTorch model, run by `tao model <network> {task}`"
        raise SpecError(f"{task}.trt_engine", None, f"the engine built by gen_trt_engine{hint}")
    if not os.path.lexists(str(engine)):
        raise TaoUserError(f"{task}.trt_engine: {engine} does not exist (build it with gen_trt_engine)")
    return require_file(engine, f"{task}.trt_engine", "engine file")  # a folder / unreadable: one line


class EngineDetector:
    """Runs an engine on RGB uint8 images: `detect(images)` -> one decode_topk dict per image.

    `batch_size` is clamped to the engine's profile; a final batch smaller than the profile's
    minimum is zero-padded and the padding's outputs dropped.
    """

    def __init__(self, engine: Engine | str | os.PathLike, mean: Sequence[float], std: Sequence[float],
                 num_select: int, batch_size: int = 1, input_size: Sequence[int] | None = None):
        self.engine = engine if isinstance(engine, Engine) else load_engine(engine)
        where = self.engine.source
        shapes = {name: spec["shape"] for name, spec in self.engine.inputs.items()}
        self.input_name = check_detr_io(shapes, self.engine.output_names, where)
        shape_range = self.engine.profile[self.input_name]
        lo, hi = shape_range.min, shape_range.max
        if input_size is not None:
            h, w = int(input_size[0]), int(input_size[1])
            if not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
                raise TaoUserError(
                    f"input_height x input_width = {h} x {w}, but {where} takes {_hw_range(lo, hi)} images; "
                    "leave them unset to use the engine's size"
                )
            self.size_hw = (h, w)
        else:
            self.size_hw = (int(shape_range.opt[2]), int(shape_range.opt[3]))
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.batch_size = min(max(int(batch_size), self.min_batch), self.max_batch)
        if self.batch_size != batch_size:
            logger.info("batch size %d is outside the engine's %d..%d: using %d", batch_size, self.min_batch,
                        self.max_batch, self.batch_size)
        self.mean, self.std, self.num_select = list(mean), list(std), int(num_select)

    @property
    def class_names(self) -> list[str]:
        return self.engine.class_names

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 3, H, W) float32 engine input of uint8 RGB images."""
        batch, _ = preprocess_batch(images, size=self.size_hw, mean=self.mean, std=self.std)
        return batch

    def run_raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred_logits, pred_boxes) of a preprocessed batch, padded up to the engine's minimum batch."""
        n = len(batch)
        if n < self.min_batch:
            pad = np.zeros((self.min_batch - n, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        out = self.engine.run({self.input_name: batch})
        return out["pred_logits"][:n], out["pred_boxes"][:n]

    def detect(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """decode_topk dicts (scores, labels, boxes xyxy in each image's pixels) per image."""
        dets = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            logits, boxes = self.run_raw(self.preprocess(chunk))
            sizes = np.array([im.shape[:2] for im in chunk])
            dets += decode_topk(logits, boxes, sizes, self.num_select)
        return dets

    def detect_files(self, paths: Iterable[str]) -> Iterator[tuple[str, np.ndarray, dict]]:
        """(path, RGB image, detections) per file, read and run batch by batch."""
        paths = list(paths)
        for i in range(0, len(paths), self.batch_size):
            chunk = paths[i:i + self.batch_size]
            images = [load_image_rgb(p) for p in chunk]
            yield from zip(chunk, images, self.detect(images), strict=True)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> EngineDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _hw_range(lo, hi) -> str:
    if (lo[2], lo[3]) == (hi[2], hi[3]):
        return f"{lo[2]} x {lo[3]}"
    return f"{lo[2]}..{hi[2]} x {lo[3]}..{hi[3]}"
