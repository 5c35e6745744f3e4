"""COCO detection dataset over a tao_core CocoIndex, an image-folder dataset for inference, and
the DETR collate function.

Errors in DataLoader workers: torch re-raises a worker's exception in the main process as
"Caught TaoUserError in DataLoader worker process 1. Original Traceback ...". So a dataset
here never raises a user error out of a worker: it returns a `LoadFailure` item, the collate
function passes it on as the batch, and `TaoDataLoader` raises it in the main process as the
same one-line TaoUserError it would have been without workers. Inference instead skips such
images (`collate_detr_skipping`) and reports them.

Items are `(image float32 3xHxW, target)` with target: boxes float32 (n, 4) cxcywh normalised,
labels int64 (n,) = COCO category ids (TAO uses them directly as class indices), image_id (1,),
orig_size (2,) and size (2,) as (h, w), area, iscrowd.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tao_core.data.coco import CocoIndex
from tao_core.data.images import load_image_checked, load_image_rgb
from tao_core.data.serialized import SerializedList
from tao_core.errors import TaoUserError
from tao_core.processing.detr import pad_batch
from tao_pytorch.detr.data.transforms import Normalize


class SharedRecords:
    """A SerializedList whose two buffers live in torch shared memory.

    Forked workers share the pages anyway (the buffers are never written). What this adds is the
    spawn / forkserver case: DataLoader pickles the dataset into each worker, and a shared-memory
    tensor pickles as a handle to the same pages instead of a copy of the whole index.
    """

    def __init__(self, records: SerializedList):
        self._tensors = tuple(_to_shared(a) for a in records.buffers)
        self._list = SerializedList.from_buffers(*(t.numpy() for t in self._tensors))

    def __len__(self) -> int:
        return len(self._list)

    def __getitem__(self, idx: int) -> dict:
        return self._list[idx]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._tensors

    def __getstate__(self):
        return {"tensors": self._tensors}

    def __setstate__(self, state):
        self._tensors = state["tensors"]
        self._list = SerializedList.from_buffers(*(t.numpy() for t in self._tensors))


def _to_shared(array: np.ndarray) -> torch.Tensor:
    dtype = {np.dtype(np.uint8): torch.uint8, np.dtype(np.int64): torch.int64}[array.dtype]
    out = torch.empty(array.shape, dtype=dtype).share_memory_()
    out.numpy()[...] = array
    return out


def _target_from_record(rec: dict, image_hw: Sequence[int]) -> dict:
    return {
        "boxes": np.asarray(rec["boxes"], np.float32).reshape(-1, 4),
        "labels": np.asarray(rec["category_ids"], np.int64),
        "area": np.asarray(rec["area"], np.float32),
        "iscrowd": np.asarray(rec["iscrowd"], np.int64),
        "image_id": np.array([rec["image_id"]], np.int64),
        "orig_size": np.array(image_hw, np.int64),
        "size": np.array(image_hw, np.int64),
    }


class LoadFailure:
    """What a dataset item or batch is when an image could not be used (see the module docstring)."""

    def __init__(self, message: str, path: str | None = None):
        self.message, self.path = message, path

    def __repr__(self) -> str:
        return f"LoadFailure({self.message!r})"


class CocoDetectionDataset(Dataset):
    """Images and boxes of a CocoIndex, passed through `transforms` (default: Normalize only).

    A serialized index (dataset_type: serialized) is moved into shared memory so workers never
    copy it; a default one is a plain list that each worker touches (and so copies) page by page.
    """

    def __init__(self, index: CocoIndex, transforms: Callable | None = None):
        self.transforms = transforms if transforms is not None else Normalize()
        self.categories = list(index.categories)
        self.sources = list(index.sources)
        self.records = SharedRecords(index.records) if isinstance(index.records, SerializedList) else index.records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int):
        rec = self.records[idx]
        try:
            # the load-time check decided each file; a tolerated truncation was reported there
            image = load_image_rgb(rec["path"], allow_truncated=bool(rec.get("truncated", False)))
            return self.transforms(image, _target_from_record(rec, image.shape[:2]))
        except TaoUserError as err:
            return LoadFailure(str(err), rec["path"])

    def source_ids(self) -> np.ndarray:
        """Index of the data source (json file) of every image, for source-balanced sampling."""
        return np.fromiter((self.records[i]["source"] for i in range(len(self))), np.int64, len(self))


class ImageListDataset(Dataset):
    """Unannotated images (inference): targets carry image_id, orig_size, size and the path."""

    def __init__(self, paths: Sequence[str], transforms: Callable | None = None):
        self.paths = list(paths)
        self.transforms = transforms if transforms is not None else Normalize()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int):
        try:
            image, warning = load_image_checked(self.paths[idx])
            target = {"image_id": np.array([idx + 1], np.int64), "orig_size": np.array(image.shape[:2], np.int64),
                      "size": np.array(image.shape[:2], np.int64)}
            image, target = self.transforms(image, target)
        except TaoUserError as err:
            return LoadFailure(str(err), self.paths[idx])
        target["path"] = self.paths[idx]
        if warning:
            target["warning"] = warning
        return image, target


def collate_detr(batch: Sequence[tuple[torch.Tensor, dict]]):
    """Pad a list of (image, target) to one (B, 3, H, W) batch; H, W = the largest image.

    Returns (images, mask, targets); mask (B, H, W) bool is True on padding, reference DETR's
    NestedTensor convention, including padding added earlier by FixedPad (taken from each
    target's unpadded "size"). A batch holding a LoadFailure is that failure (every bad file of
    the batch named), raised in the main process by TaoDataLoader.
    """
    failures = [item for item in batch if isinstance(item, LoadFailure)]
    if failures:
        return LoadFailure("; ".join(f.message for f in failures))
    return _pad(batch)


def collate_detr_skipping(batch: Sequence):
    """collate_detr for inference: (images, mask, targets, skipped) with the LoadFailures left
    out of the batch and returned in `skipped` (images and mask are None when all failed)."""
    skipped = [item for item in batch if isinstance(item, LoadFailure)]
    good = [item for item in batch if not isinstance(item, LoadFailure)]
    if not good:
        return None, None, [], skipped
    return (*_pad(good), skipped)


def _pad(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    images, targets = zip(*batch, strict=True)
    valid = [tuple(int(v) for v in t["size"]) if "size" in t else im.shape[-2:] for im, t in zip(images, targets, strict=True)]
    padded, mask = pad_batch([im.numpy() for im in images], valid_sizes=valid)
    return torch.from_numpy(padded), torch.from_numpy(mask), list(targets)


def with_mask_channel(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) + (B, H, W) mask -> TAO's (B, 4, H, W) model input (4th channel 1 on padding)."""
    return torch.cat([images, mask[:, None].to(images.dtype)], dim=1)
