"""OneFormer inference outputs, shared by `tao model oneformer inference` (checkpoint) and
`tao deploy oneformer inference` (engine): the same input, the same post-processing and the
same files, so a model and its engine are compared file for file.

Input (`network_input`): the image resized to exactly inference.image_size [H, W] (Pillow
bilinear, tao_core.processing.detr.resize_image), RGB float32 on the 0..255 scale, the layout
of the exported graph (which normalises inside, as the model does); `task_tokens(mode, L)` the
CLIP ids of "The task is {mode}" as float32, the `task_tokens` input of the graph.

Outputs (`OneFormerOutputWriter`, one per run, into the staging folder of replace_outputs):

    images_annotated/<stem>.png|.jpg   the picture with its segments in class colours, outlines,
                                       tags (things / instances) and a legend of the classes shown
    images.json                        [{id, file_name, height, width}]: the image ids used below
    semantic/<stem>.png                mode semantic: one category id per pixel (the label map's
                                       ids; 8-bit, 16-bit when an id is > 255)
    panoptic/<stem>.png, panoptic.json mode panoptic: COCO panoptic prediction (RGB-encoded segment
                                       ids; annotations [{image_id, file_name, segments_info [{id,
                                       category_id, isthing, area, bbox}]}], categories)
    instances.json                     mode instance: COCO results [{image_id, category_id, score,
                                       bbox, segmentation (RLE)}], the top test_topk_per_image per image

Post-processing is tao_core.processing.oneformer.postprocess with model.object_mask_threshold,
overlap_threshold and test_topk_per_image; the annotated image of instance mode shows the
instances scoring above object_mask_threshold (the JSON keeps all of them, as evaluation does).
Classes (`inference_classes`): dataset.label_map, else the categories of dataset.test.annotations
(a COCO / COCO panoptic json), else class_0 .. class_{C-1} (all things).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tao_core.data.coco import read_json
from tao_core.data.coco_panoptic import id2rgb, parse_categories
from tao_core.data.segmentation_sources import ClassTable, class_table
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes, atomic_write_text
from tao_core.processing.detr import resize_image
from tao_core.processing.oneformer import MODES, instances_to_coco, postprocess, shortest_edge_size
from tao_core.spec.access import spec_get
from tao_core.text import task_text, tokenize
from tao_core.visualize.draw import RGB, class_color
from tao_core.visualize.segmentation import Segment, draw_instances, draw_segments

logger = logging.getLogger(__name__)

# The ONNX contract of `oneformer export` (the names and shapes of TAO's OneFormer export).
INPUT_NAMES = ("images", "task_tokens")
OUTPUT_NAMES = ("pred_logits", "pred_masks")
# ONNX metadata_props key saying how `images` is fed; TAO's own files lack it (pre-normalised input).
INPUT_RANGE_KEY = "tao.oneformer.images"
INPUT_RANGE = "rgb_0_255"  # RGB 0..255, normalised inside the graph

# ----------------------------------------------------------------------------- network input


def task_tokens(mode: str, length: int, batch: int = 1) -> np.ndarray:
    """(batch, length) float32 CLIP ids of "The task is {mode}": the graph's `task_tokens` input
    (TAO's export contract: the model's task MLP reads the ids as numbers)."""
    if mode not in MODES:
        raise TaoUserError(f"inference.mode: {mode!r} is not one of {list(MODES)}")
    ids = tokenize([task_text(mode)], context_length=int(length)).astype(np.float32)
    return np.repeat(ids, int(batch), axis=0)


def network_input(image: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 (3, H, W) on 0..255, resized to exactly size_hw."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    return resize_image(image, size_hw).transpose(2, 0, 1).astype(np.float32)


def evaluation_input(image: np.ndarray, size_hw: Sequence[int], min_size: int, max_size: int,
                     pad_value: Sequence[float]) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 HxWx3 RGB -> ((3, H, W) float32 on 0..255, (h, w) of the image inside): the image
    resized as the evaluation of a checkpoint resizes it (shorter side min_size, longer at most
    max_size: dataset.augmentation.test_min_size / test_max_size), scaled down further only when
    it does not fit size_hw, placed top-left and padded to size_hw with `pad_value` (the spec's
    pixel_mean: the normalised zero padding of the PyTorch loader). An engine whose H x W is the
    PyTorch batch's padded size so sees exactly the pixels the checkpoint saw."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    H, W = int(size_hw[0]), int(size_hw[1])
    h, w = shortest_edge_size(image.shape[:2], int(min_size), int(max_size))
    if h > H or w > W:
        scale = min(H / h, W / w)
        h, w = max(1, min(H, int(h * scale + 0.5))), max(1, min(W, int(w * scale + 0.5)))
    out = np.empty((3, H, W), np.float32)
    out[:] = np.asarray(pad_value, np.float32).reshape(3, 1, 1)
    out[:, :h, :w] = resize_image(image, (h, w)).transpose(2, 0, 1)
    return out, (h, w)


def normalise_input(batch: np.ndarray, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std on the 0..255 scale: the input of a graph exported without the
    normalisation (TAO's own OneFormer export takes pre-normalised images)."""
    mean = np.asarray(pixel_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pixel_std, np.float32).reshape(1, 3, 1, 1)
    return ((np.asarray(batch, np.float32) - mean) / std).astype(np.float32)


def padded_size(size_hw: Sequence[int], divisibility: int) -> tuple[int, int]:
    """size_hw rounded up to a multiple of `divisibility` (what the model pads its input to)."""
    d = int(divisibility)
    h, w = int(size_hw[0]), int(size_hw[1])
    return (-(-h // d) * d, -(-w // d) * d) if d > 1 else (h, w)


# ----------------------------------------------------------------------------- classes and settings


@dataclass(frozen=True)
class SegmentationClasses:
    """Names, json category ids, thing indices and colours, indexed by the model's class index."""

    names: list[str]
    category_ids: list[int]
    thing_ids: list[int]
    colors: list[RGB]
    source: str

    @classmethod
    def from_table(cls, table: ClassTable) -> SegmentationClasses:
        colors = [tuple(int(v) for v in c[:3]) if c else class_color(n, {}) for n, c in zip(table.names, table.colors,
                                                                                               strict=True)]
        return cls(list(table.names), [int(i) for i in table.category_ids], table.thing_ids, colors, table.source)

    @classmethod
    def placeholders(cls, num_classes: int) -> SegmentationClasses:
        names = [f"class_{i}" for i in range(num_classes)]
        return cls(names, list(range(1, num_classes + 1)), list(range(num_classes)),
                   [class_color(n, {}) for n in names], "placeholders (no dataset.label_map)")

    def fit(self, num_classes: int, where: str) -> SegmentationClasses:
        """Check against the model's number of classes (more names than classes is an error)."""
        if len(self.names) > num_classes:
            raise TaoUserError(f"{self.source} names {len(self.names)} classes but {where} has {num_classes}; "
                               "set model.sem_seg_head.num_classes to match")
        if len(self.names) == num_classes:
            return self
        extra = SegmentationClasses.placeholders(num_classes)
        start = max(self.category_ids, default=0) + 1
        n = num_classes - len(self.names)
        return SegmentationClasses(self.names + extra.names[len(self.names):],
                                   self.category_ids + list(range(start, start + n)),
                                   self.thing_ids + list(range(len(self.names), num_classes)),
                                   self.colors + extra.colors[len(self.names):], self.source)

    def categories(self) -> list[dict]:
        things = set(self.thing_ids)
        return [{"id": c, "name": n, "isthing": int(i in things), "color": list(col)}
                for i, (c, n, col) in enumerate(zip(self.category_ids, self.names, self.colors, strict=True))]


def inference_classes(cfg: Any, num_classes: int) -> SegmentationClasses:
    """See the module docstring; `num_classes` is the model's (model.sem_seg_head.num_classes)."""
    ds = spec_get(cfg, "dataset")
    label_map = spec_get(ds, "label_map")
    contiguous = bool(spec_get(ds, "contiguous_id", True))
    if label_map:
        return SegmentationClasses.from_table(class_table(str(label_map), None, contiguous)).fit(
            num_classes, "model.sem_seg_head.num_classes")
    ann = spec_get(spec_get(ds, "test"), "annotations")
    if ann and str(ann).lower().endswith(".json") and os.path.isfile(str(ann)):
        data = read_json(str(ann))
        cats = data.get("categories") if isinstance(data, dict) else None
        if cats:
            table = ClassTable(parse_categories(cats, str(ann)), contiguous, source=f"the categories of {ann}")
            return SegmentationClasses.from_table(table).fit(num_classes, "model.sem_seg_head.num_classes")
    logger.info("no dataset.label_map nor dataset.test.annotations categories: classes named class_0..class_%d",
                num_classes - 1)
    return SegmentationClasses.placeholders(num_classes)


@dataclass(frozen=True)
class PostprocessSettings:
    mode: str
    object_mask_threshold: float = 0.4
    overlap_threshold: float = 0.8
    test_topk_per_image: int = 100

    @classmethod
    def from_spec(cls, cfg: Any, mode: str | None = None) -> PostprocessSettings:
        """inference.mode (null: model.mode) and the model's post-processing thresholds."""
        model = spec_get(cfg, "model")
        mode = mode or spec_get(spec_get(cfg, "inference"), "mode") or spec_get(model, "mode")
        if mode not in MODES:
            raise TaoUserError(f"inference.mode: {mode!r} is not one of {list(MODES)}")
        return cls(str(mode), float(spec_get(model, "object_mask_threshold")),
                   float(spec_get(model, "overlap_threshold")), int(spec_get(model, "test_topk_per_image")))


# ----------------------------------------------------------------------------- writing


def _png_bytes(array_or_image) -> bytes:
    buf = io.BytesIO()
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    img.save(buf, format="PNG")
    return buf.getvalue()


def semantic_png(class_map: np.ndarray, category_ids: Sequence[int]) -> bytes:
    """PNG of the category id of each pixel's class index (8-bit, or 16-bit when needed)."""
    ids = np.asarray(category_ids, np.int64)[np.asarray(class_map, np.int64)]
    if ids.max(initial=0) <= 255:
        return _png_bytes(ids.astype(np.uint8))
    return _png_bytes(Image.fromarray(ids.astype(np.uint16)))


def _xywh(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def instance_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, 4) float32 xyxy pixel boxes of (K, H, W) bool masks (zeros for an empty mask)."""
    masks = np.asarray(masks, bool)
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        x, y, w, h = _xywh(m)
        boxes[i] = (x, y, x + w, y + h)
    return boxes


class OneFormerOutputWriter:
    """Writes one run's outputs (see the module docstring) under `out_dir`; `close()` writes the JSON files."""

    def __init__(self, out_dir: str | os.PathLike, settings: PostprocessSettings, classes: SegmentationClasses):
        self.out = Path(out_dir)
        self.settings, self.classes = settings, classes
        self.images: list[dict] = []
        self.instances: list[dict] = []
        self.panoptic: list[dict] = []
        self.counts = {"images": 0, "segments": 0}

    def write(self, image_path: str | os.PathLike, image: np.ndarray, mask_cls: np.ndarray, mask_pred: np.ndarray,
              padded_hw: Sequence[int], valid_hw: Sequence[int]) -> dict:
        """One image: raw outputs (Q, C+1) / (Q, h, w) of the network input (valid_hw of padded_hw)
        -> result of the mode on the original image -> files. Returns {"segments": n}."""
        s, c = self.settings, self.classes
        src = Path(image_path)
        image_id = len(self.images) + 1
        h, w = image.shape[:2]
        self.images.append({"id": image_id, "file_name": str(image_path), "height": int(h), "width": int(w)})
        result = postprocess(s.mode, mask_cls, mask_pred, padded_hw=padded_hw, valid_hw=valid_hw, output_hw=(h, w),
                             thing_ids=c.thing_ids, object_mask_threshold=s.object_mask_threshold,
                             overlap_threshold=s.overlap_threshold, test_topk_per_image=s.test_topk_per_image)
        if s.mode == "semantic":
            n, canvas = self._semantic(src, image, result[0])
        elif s.mode == "panoptic":
            n, canvas = self._panoptic(src, image, image_id, *result)
        else:
            n, canvas = self._instance(image, image_id, result)
        fmt, ext = ("PNG", ".png") if src.suffix.lower() == ".png" else ("JPEG", ".jpg")
        buf = io.BytesIO()
        canvas.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        atomic_write_bytes(self.out / "images_annotated" / (src.stem + ext), buf.getvalue())
        self.counts["images"] += 1
        self.counts["segments"] += n
        return {"segments": n}

    def _semantic(self, src: Path, image: np.ndarray, class_map: np.ndarray):
        c = self.classes
        atomic_write_bytes(self.out / "semantic" / (src.stem + ".png"), semantic_png(class_map, c.category_ids))
        present = np.unique(class_map).tolist()
        segments = [Segment(int(k) + 1, c.names[k], c.colors[k], tagged=False) for k in present]
        return len(present), draw_segments(image, class_map + 1, segments)

    def _panoptic(self, src: Path, image: np.ndarray, image_id: int, seg_map: np.ndarray, segments_info: list):
        c = self.classes
        atomic_write_bytes(self.out / "panoptic" / (src.stem + ".png"), _png_bytes(id2rgb(seg_map)))
        info = []
        for seg in segments_info:
            mask = seg_map == seg["id"]
            info.append({"id": int(seg["id"]), "category_id": int(c.category_ids[seg["category_id"]]),
                         "isthing": int(bool(seg["isthing"])), "area": int(mask.sum()), "bbox": _xywh(mask)})
        self.panoptic.append({"image_id": image_id, "file_name": src.stem + ".png", "segments_info": info})
        drawn = [Segment(int(seg["id"]), c.names[seg["category_id"]], c.colors[seg["category_id"]],
                         tagged=bool(seg["isthing"])) for seg in segments_info]
        return len(info), draw_segments(image, seg_map, drawn)

    def _instance(self, image: np.ndarray, image_id: int, inst: dict):
        c, s = self.classes, self.settings
        results = instances_to_coco(inst, image_id, c.category_ids)
        for r, m in zip(results, inst["masks"], strict=True):
            r["bbox"] = _xywh(m)
        self.instances += results
        shown = np.flatnonzero(inst["scores"] > s.object_mask_threshold)
        drawn = [Segment(int(i) + 1, c.names[int(inst["labels"][i])], c.colors[int(inst["labels"][i])],
                         score=float(inst["scores"][i])) for i in shown]
        return len(results), draw_instances(image, inst["masks"][shown], drawn)

    def close(self) -> None:
        def dump(name: str, obj) -> None:
            atomic_write_text(self.out / name, json.dumps(obj, indent=1) + "\n")

        dump("images.json", self.images)
        if self.settings.mode == "panoptic":
            dump("panoptic.json", {"images": self.images, "annotations": self.panoptic,
                                   "categories": self.classes.categories()})
        elif self.settings.mode == "instance":
            dump("instances.json", self.instances)

    def summary(self, total: int, results_dir: str | os.PathLike) -> tuple[str, dict]:
        """(the one-line message, the task's result fields) of a finished run over `total` inputs."""
        mode, done, n = self.settings.mode, self.counts["images"], self.counts["segments"]
        message = (f"Inference ({mode}) on {done} of {total} images: {n} "
                   f"{'instances' if mode == 'instance' else 'segments'} written to {results_dir}")
        return message, {"num_images": done, "mode": mode, "results_dir": results_dir, "num_segments": n}
