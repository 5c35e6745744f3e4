"""`build_dataloader(dataset_cfg, split)`: the DataLoader of one split of a DETR-family spec."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from tao_core.data.coco import load_coco_sources
from tao_core.data.images import list_images
from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get, spec_get_default
from tao_core.specs.detr_common import DatasetConfig
from tao_pytorch.detr.data.dataset import (
    CocoDetectionDataset,
    ImageListDataset,
    LoadFailure,
    collate_detr,
    collate_detr_skipping,
)
from tao_pytorch.detr.data.samplers import SPLITTING_SAMPLERS, build_train_sampler, check_sampler, split_sources
from tao_pytorch.detr.data.transforms import build_transforms

logger = logging.getLogger(__name__)

# Which spec field feeds each split; evaluate falls back to the validation sources (see the spec rules).
_SOURCES = {"train": "train_data_sources", "val": "val_data_sources", "test": "test_data_sources",
            "eval": "test_data_sources"}


class TaoDataLoader(DataLoader):
    """A DataLoader that raises a worker's LoadFailure batch in the main process as the one-line
    TaoUserError it is (see tao_pytorch.detr.data.dataset), never as a worker traceback."""

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, LoadFailure):
                raise TaoUserError(batch.message)
            yield batch


def _is_given(sources: Any) -> bool:
    """A list of sources is given when non-empty, a single source when it names a json file."""
    if sources is None:
        return False
    if isinstance(sources, dict) or hasattr(sources, "image_dir") or spec_get(sources, "json_file") is not None:
        return bool(spec_get(sources, "json_file"))
    return len(sources) > 0


def build_dataset(dataset_cfg: Any, split: str, *, rank: int = 0, world_size: int = 1,
                  input_size: Sequence[int] | None = None, check_images: bool | str = True):
    """The dataset of `split` (train / val / test / eval / infer) with its transforms."""
    transforms = build_transforms(spec_get(dataset_cfg, "augmentation", {}) or {}, split, input_size)
    if split == "infer":
        src = spec_get(dataset_cfg, "infer_data_sources")
        return ImageListDataset(list_images(spec_get(src, "image_dir") if src is not None else []), transforms)
    field = _SOURCES[split]
    sources = spec_get(dataset_cfg, field)
    if split in ("test", "eval") and not _is_given(sources):
        field, sources = "val_data_sources", spec_get(dataset_cfg, "val_data_sources")
    if not _is_given(sources):
        raise TaoUserError(f"dataset.{field}: no {{image_dir, json_file}} given for the {split} split")

    dataset_type = spec_get_default(dataset_cfg, "dataset_type", DatasetConfig)
    sampler = spec_get_default(dataset_cfg, "train_sampler", DatasetConfig)
    if split == "train" and dataset_type == "default" and sampler in SPLITTING_SAMPLERS:
        sources = split_sources(sources, rank, world_size)
    index = load_coco_sources(sources, spec_get(dataset_cfg, "num_classes"), check_images=check_images,
                              dataset_type=dataset_type)
    return CocoDetectionDataset(index, transforms)


def build_dataloader(dataset_cfg: Any, split: str, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                     batch_size: int | None = None, input_size: Sequence[int] | None = None,
                     check_images: bool | str = True, dataset=None) -> DataLoader:
    """DataLoader of one split, yielding `(images (B,3,H,W), mask (B,H,W) True on padding, targets)`
    (inference: `(images, mask, targets, skipped LoadFailures)`, see collate_detr_skipping).

    train: sampler from dataset.train_sampler (honoured when dataset_type is default, as in TAO;
    serialized always shuffles every image), batches of dataset.batch_size with the last partial
    batch dropped. Other splits: in order, nothing dropped, split across ranks when world_size > 1.
    `input_size=(h, w)` replaces the evaluation resize by an exact one (evaluate/inference
    input_height/width). `dataset` skips building one (tests, custom sources).
    """
    if dataset is None:
        dataset = build_dataset(dataset_cfg, split, rank=rank, world_size=world_size, input_size=input_size,
                                check_images=check_images)
    batch_size = int(batch_size or spec_get_default(dataset_cfg, "batch_size", DatasetConfig))
    workers = int(spec_get_default(dataset_cfg, "workers", DatasetConfig))
    # Pinning needs an accelerator; without one torch only warns, so skip it.
    pin = bool(spec_get_default(dataset_cfg, "pin_memory", DatasetConfig)) and torch.cuda.is_available()
    generator = torch.Generator().manual_seed(seed + rank)  # per-worker seeds of `random` derive from it
    # inference skips unreadable images (and reports them); every other split stops on one
    collate = collate_detr_skipping if isinstance(dataset, ImageListDataset) else collate_detr
    common = {"num_workers": workers, "pin_memory": pin, "collate_fn": collate, "generator": generator}

    if split == "train":
        name = spec_get_default(dataset_cfg, "train_sampler", DatasetConfig)
        check_sampler(name)
        if spec_get_default(dataset_cfg, "dataset_type", DatasetConfig) != "default" and name != "default_sampler":
            logger.warning("dataset.train_sampler=%s has no effect with dataset_type serialized (as in TAO); "
                           "set dataset_type: default to use it", name)
            name = "default_sampler"
        sampler = build_train_sampler(name, dataset, rank, world_size, seed)
        return TaoDataLoader(dataset, batch_sampler=BatchSampler(sampler, batch_size, drop_last=True), **common)

    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    else:
        sampler = SequentialSampler(dataset)
    return TaoDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=False, **common)
