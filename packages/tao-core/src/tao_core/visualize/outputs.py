"""Inference outputs shared by every network (PyTorch, TF and TensorRT deploy paths).

For each input image, InferenceWriter.write produces, like TAO:

    <results_dir>/images_annotated/<stem>.png|.jpg   boxes, class names and scores drawn
    <results_dir>/labels/<stem>.txt                   KITTI, 16 fields with the score last

Only detections with score >= conf_threshold are kept, in both outputs. PNG inputs stay PNG
(lossless); every other format is written as JPEG. Images with the same stem overwrite each
other, as in TAO; give each stem once per results_dir.

write_detr_detections applies DINO / Deformable DETR's class naming (label l = classmap line l)
before the writer, for the PyTorch and the engine inference tasks alike.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tao_core.data.images import load_image_rgb
from tao_core.data.kitti import KittiObject, write_kitti_labels
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes
from tao_core.visualize.draw import ColorSpec, draw_detections, parse_color_map


class InferenceWriter:
    """Writes annotated images and KITTI label files for one inference run."""

    def __init__(
        self,
        results_dir: str | os.PathLike,
        color_map: Mapping[str, ColorSpec] | None = None,
        outline_width: int = 3,
        conf_threshold: float = 0.5,
    ):
        if conf_threshold is None or not 0 <= float(conf_threshold):
            raise TaoUserError(f"conf_threshold: got {conf_threshold!r}; expected a number >= 0")
        parse_color_map(color_map)  # fail on a bad colour before the first image
        self.results_dir = Path(results_dir)
        self.color_map = dict(color_map or {})
        self.outline_width = int(outline_width)
        self.conf_threshold = float(conf_threshold)
        self.images_dir = self.results_dir / "images_annotated"
        self.labels_dir = self.results_dir / "labels"

    def write(
        self,
        image_path: str | os.PathLike,
        image: np.ndarray | Image.Image | None,
        boxes_xyxy: Sequence[Sequence[float]] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        class_names: Sequence[str],
    ) -> tuple[Path, Path]:
        """Write both outputs for one image; returns (annotated image path, label path).

        `image` is the original-resolution RGB image (None -> read from image_path); boxes are
        xyxy pixels in that image, with one score and one class name per box.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not len(boxes) == len(scores) == len(class_names):
            raise ValueError(
                f"got {len(boxes)} boxes, {len(scores)} scores and {len(class_names)} class "
                "names; expected one of each per detection"
            )
        keep = [i for i in range(len(boxes)) if scores[i] >= self.conf_threshold]
        kept_boxes = boxes[keep]
        kept_scores = scores[keep]
        kept_names = [class_names[i] for i in keep]

        src = Path(image_path)
        if image is None:
            image = load_image_rgb(src)  # EXIF-upright, as the boxes were predicted on
        annotated = draw_detections(
            image, kept_boxes, kept_names, kept_scores,
            color_map=self.color_map, outline_width=self.outline_width,
        )
        fmt, ext = ("PNG", ".png") if src.suffix.lower() == ".png" else ("JPEG", ".jpg")
        buf = io.BytesIO()
        annotated.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        image_out = self.images_dir / (src.stem + ext)
        atomic_write_bytes(image_out, buf.getvalue())

        objects = [
            KittiObject(type=n, bbox=tuple(float(v) for v in b), score=float(s))
            for b, s, n in zip(kept_boxes, kept_scores, kept_names, strict=True)
        ]
        label_out = self.labels_dir / (src.stem + ".txt")
        write_kitti_labels(label_out, objects)
        return image_out, label_out


class InferenceWriters:
    """One InferenceWriter per output folder: all in `results_dir`, or with `per_source_folder`
    (TAO's `is_internal`) in a sub-folder named after each image's folder."""

    def __init__(self, results_dir, color_map=None, outline_width: int = 3, conf_threshold: float = 0.5,
                 per_source_folder: bool = False):
        self._args = (color_map, outline_width, conf_threshold)
        self.results_dir, self.per_source_folder = results_dir, per_source_folder
        self._writers: dict[str, InferenceWriter] = {}
        self.for_image("")  # a bad color_map or threshold fails now, before any model is loaded

    def for_image(self, image_path: str | os.PathLike) -> InferenceWriter:
        sub = os.path.basename(os.path.dirname(image_path)) if self.per_source_folder else ""
        if sub not in self._writers:
            self._writers[sub] = InferenceWriter(os.path.join(self.results_dir, sub), *self._args)
        return self._writers[sub]


def write_detr_detections(
    writer: InferenceWriter,
    image_path: str | os.PathLike,
    image: np.ndarray | Image.Image | None,
    det: Mapping[str, np.ndarray],
    class_names: Sequence[str],
) -> int:
    """One image's decoded DETR detections (numpy `scores`, `labels`, `boxes` xyxy in the original
    image) through `writer`, with TAO's classmap rule: label l is named class_names[l - 1] (line l
    of the classmap), labels the classmap does not name (0, > len) are dropped.
    Returns how many of the named detections reach the writer's conf_threshold."""
    scores, labels, boxes = (np.asarray(det[k]) for k in ("scores", "labels", "boxes"))
    named = [i for i, lab in enumerate(labels.tolist()) if 1 <= lab <= len(class_names)]
    names = [class_names[labels[i] - 1] for i in named]
    writer.write(image_path, image, boxes[named], scores[named], names)
    return int((scores[named] >= writer.conf_threshold).sum())
