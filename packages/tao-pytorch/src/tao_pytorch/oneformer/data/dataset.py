"""OneFormer datasets over the three annotation formats of seed 004, and their collate function.

`OneFormerDataset` reads one split's validated records (tao_core.data: COCO panoptic, COCO
instance or semantic JSON lines), augments each sample (transforms.py), draws its task (training:
dataset.task_prob_train; evaluation: the task given) and builds that task's targets (targets.py).
Records of dataset_type serialized live in one shared-memory buffer (the DETR loaders' SharedRecords).

An item is a dict:
    image      float32 (3, h, w), normalised with dataset.pixel_mean / pixel_std
    labels     int64 (n,) class indices;  masks  bool (n, h, w);  sem_seg  int64 (h, w), ignore_value elsewhere
    task       "semantic" | "instance" | "panoptic";  task_tokens  int64 (task_seq_len,) of "The task is {task}"
    texts      [str] * num_text_queries;  text_tokens  int64 (num_text_queries, max_seq_len)
    image_id, orig_size (H, W) of the file, size (h, w) after augmentation, path
A file that fails to load becomes a LoadFailure item; the collate passes it on and TaoDataLoader
raises it in the main process as a one-line error (see tao_pytorch.detr.data.dataset).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tao_core.data.coco_panoptic import read_panoptic_png
from tao_core.data.images import load_image_checked, load_image_rgb
from tao_core.data.oneformer_ground_truth import coco_instances, ground_truth
from tao_core.data.segmentation_sources import (
    ClassTable,
    coco_segmentation_mask,
    read_class_mask,
    semantic_to_segments,
)
from tao_core.data.serialized import SerializedList
from tao_core.errors import TaoUserError
from tao_core.processing.detr import normalize_image
from tao_core.text import task_text, tokenize
from tao_pytorch.detr.data.dataset import LoadFailure, SharedRecords
from tao_pytorch.oneformer.data.targets import TASKS_OF_FORMAT, build_targets, choose_task, cutmix

FORMATS = ("semantic", "panoptic", "instance")


class TextTokens:
    """CLIP token ids of the task and query texts, each distinct text tokenized once per process
    (an image's texts are a few class phrases and one padding phrase)."""

    def __init__(self, context_length: int):
        self.context_length = int(context_length)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            for t, row in zip(new, tokenize(new, self.context_length), strict=True):
                self._cache[t] = row
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.context_length), np.int64)


def load_sample(fmt: str, rec: dict, table: ClassTable, ignore_value: int) -> tuple[dict, dict]:
    """(sample {"image", "seg" | "masks"}, segments {"ids", "classes", "iscrowd"}) of one record."""
    image = load_image_rgb(rec["path"], allow_truncated=bool(rec.get("truncated", False)))
    h, w = image.shape[:2]
    if fmt == "semantic":
        seg, segments = semantic_to_segments(read_class_mask(rec["mask_path"]), table, ignore_value)
        return {"image": image, "seg": seg}, segments
    if fmt == "panoptic":
        seg = read_panoptic_png(rec["pan_path"]).astype(np.int32)
        if seg.shape != (h, w):
            raise TaoUserError(f"{rec['pan_path']} is {seg.shape[1]}x{seg.shape[0]} but {rec['path']} {w}x{h}")
        segments = {"ids": np.asarray(rec["segment_ids"], np.int64),
                    "classes": table.index_of(rec["category_ids"]), "iscrowd": np.asarray(rec["iscrowd"])}
        return {"image": image, "seg": seg}, segments
    segm = rec["segmentation"] or []
    masks = np.stack([coco_segmentation_mask(s, h, w) for s in segm]) if segm else np.zeros((0, h, w), bool)
    n = len(masks)
    segments = {"ids": np.arange(1, n + 1, dtype=np.int64), "classes": table.index_of(rec["category_ids"][:n]),
                "iscrowd": np.asarray(rec["iscrowd"][:n])}
    return {"image": image, "masks": masks}, segments


class OneFormerDataset(Dataset):
    """One split of a OneFormer dataset; see the module docstring."""

    def __init__(self, fmt: str, records: list[dict] | SerializedList, table: ClassTable, transforms, *,
                 num_text_queries: int, ignore_value: int = 255, mean: Sequence[float], std: Sequence[float],
                 task: str | None = None, task_prob: Mapping[str, float] | None = None, cutmix_prob: float = 0.0,
                 task_seq_len: int = 77, max_seq_len: int = 77):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        if task is not None and task not in TASKS_OF_FORMAT[fmt]:
            raise TaoUserError(f"a {fmt} dataset cannot give {task} targets; it gives {list(TASKS_OF_FORMAT[fmt])}")
        if task is None and not task_prob:
            raise ValueError("give either a fixed task or the task probabilities")
        self.fmt, self.table, self.transforms = fmt, table, transforms
        self.records = SharedRecords(records) if isinstance(records, SerializedList) else records
        self.num_text_queries, self.ignore_value = int(num_text_queries), int(ignore_value)
        self.mean, self.std = list(mean), list(std)
        self.task, self.task_prob, self.cutmix_prob = task, dict(task_prob or {}), float(cutmix_prob)
        self.task_tokens, self.text_tokens = TextTokens(task_seq_len), TextTokens(max_seq_len)

    def __len__(self) -> int:
        return len(self.records)

    def _augmented(self, idx: int, rng: np.random.Generator) -> tuple[dict, dict, dict]:
        rec = self.records[idx]
        sample, segments = load_sample(self.fmt, rec, self.table, self.ignore_value)
        orig_hw = sample["image"].shape[:2]
        return self.transforms(sample, rng), segments, {"image_id": int(rec["image_id"]), "path": rec["path"],
                                                        "orig_size": orig_hw}

    def __getitem__(self, idx: int):
        # One generator per item, seeded from torch's RNG: DataLoader reseeds that per worker and epoch.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        try:
            sample, segments, meta = self._augmented(idx, rng)
            task = self.task or choose_task(rng, self.task_prob, TASKS_OF_FORMAT[self.fmt])
            targets = build_targets(task, sample, segments, self.table.names, self.table.isthing,
                                    self.num_text_queries, self.ignore_value)
            image = sample["image"]
            if self.cutmix_prob > 0 and len(self) > 1 and rng.random() < self.cutmix_prob:
                other, other_segments, _ = self._augmented(int(rng.integers(len(self))), rng)
                other_targets = build_targets(task, other, other_segments, self.table.names, self.table.isthing,
                                              self.num_text_queries, self.ignore_value)
                image, targets = cutmix(image, targets, other["image"], other_targets, rng, self.table.names, task,
                                        self.num_text_queries)
        except TaoUserError as err:
            return LoadFailure(str(err), self.records[idx]["path"])
        return {
            "image": torch.from_numpy(normalize_image(image, self.mean, self.std)),
            "labels": torch.from_numpy(targets["labels"]),
            "masks": torch.from_numpy(targets["masks"]),
            "sem_seg": torch.from_numpy(targets["sem_seg"]),
            "task": task,
            "task_tokens": torch.from_numpy(self.task_tokens([task_text(task)])[0]),
            "texts": targets["texts"],
            "text_tokens": torch.from_numpy(self.text_tokens(targets["texts"])),
            "size": tuple(image.shape[:2]),
            **meta,
        }


    def ground_truth(self, idx: int) -> dict:
        """Evaluation ground truth of item idx on the original image (tao_core.data.oneformer_ground_truth)."""
        return ground_truth(self.fmt, self.records[idx], self.table, self.ignore_value)

    def coco_instances(self) -> dict:
        """COCO instance ground truth of an instance source, for tao_core.metrics.coco.evaluate(..., "segm")."""
        return coco_instances(self.fmt, self.records, self.table)


class OneFormerImageDataset(Dataset):
    """Unannotated images for inference: {"image", "image_id", "orig_size", "size", "path"}."""

    def __init__(self, paths: Sequence[str], transforms, mean: Sequence[float], std: Sequence[float]):
        self.paths, self.transforms = list(paths), transforms
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int):
        try:
            image, warning = load_image_checked(self.paths[idx])
        except TaoUserError as err:
            return LoadFailure(str(err), self.paths[idx])
        sample = self.transforms({"image": image}, np.random.default_rng(0))
        out = {"image": torch.from_numpy(normalize_image(sample["image"], self.mean, self.std)),
               "image_id": idx + 1, "orig_size": image.shape[:2], "size": sample["image"].shape[:2],
               "path": self.paths[idx]}
        if warning:
            out["warning"] = warning
        return out


def _round_up(v: int, div: int) -> int:
    return -(-v // div) * div if div > 0 else v


def collate_oneformer(batch: Sequence[Any], size_divisibility: int = 32, ignore_value: int = 255,
                      pad_to: Sequence[int] | None = None):
    """Pad a list of items into one batch dict; a batch holding a LoadFailure is that failure.

    images (B, 3, H, W) zero-padded at the bottom / right (detectron2's ImageList), H, W the largest
    item rounded up to size_divisibility, or `pad_to` (fixed padding) when it holds every item;
    pad_mask (B, H, W) True on padding; image_sizes [(h, w)]; targets [{"labels", "masks" padded
    with False, "sem_seg" padded with ignore_value}] (training / evaluation items only);
    task_tokens (B, L); text_tokens (B, T, L); tasks, texts, meta [{image_id, orig_size, size, path}].
    """
    failures = [item for item in batch if isinstance(item, LoadFailure)]
    if failures:
        return LoadFailure("; ".join(f.message for f in failures))
    sizes = [tuple(int(v) for v in item["image"].shape[-2:]) for item in batch]
    h = _round_up(max(s[0] for s in sizes), size_divisibility)
    w = _round_up(max(s[1] for s in sizes), size_divisibility)
    if pad_to is not None:
        h, w = max(h, _round_up(int(pad_to[0]), size_divisibility)), max(w, _round_up(int(pad_to[1]), size_divisibility))
    images = torch.zeros((len(batch), 3, h, w), dtype=torch.float32)
    pad_mask = torch.ones((len(batch), h, w), dtype=torch.bool)
    out: dict[str, Any] = {"image_sizes": sizes, "meta": []}
    targets = []
    for i, (item, (ih, iw)) in enumerate(zip(batch, sizes, strict=True)):
        images[i, :, :ih, :iw] = item["image"]
        pad_mask[i, :ih, :iw] = False
        out["meta"].append({k: item[k] for k in ("image_id", "orig_size", "size", "path") if k in item})
        if "labels" in item:
            masks = torch.zeros((len(item["labels"]), h, w), dtype=torch.bool)
            masks[:, :ih, :iw] = item["masks"]
            sem_seg = torch.full((h, w), ignore_value, dtype=torch.int64)
            sem_seg[:ih, :iw] = item["sem_seg"]
            targets.append({"labels": item["labels"], "masks": masks, "sem_seg": sem_seg})
    out.update(images=images, pad_mask=pad_mask)
    if targets:
        out.update(targets=targets, tasks=[item["task"] for item in batch], texts=[item["texts"] for item in batch],
                   task_tokens=torch.stack([item["task_tokens"] for item in batch]),
                   text_tokens=torch.stack([item["text_tokens"] for item in batch]))
    return out
