"""`build_dataset(cfg, split)` / `build_dataloader(cfg, split)`: OneFormer data of one split of a spec.

`cfg` is the whole experiment spec (tao_core.specs.oneformer): the dataset section names the files
and augmentation, the model section the classes (sem_seg_head.num_classes, ignore_value), the text
queries (one_former.num_object_queries - text_encoder.n_ctx, text_encoder.context_length) and the
padding (one_former.size_divisibility). The split's format follows from its files
(tao_core.specs.oneformer_dataset.split_format). Everything a user can get wrong in the files is
found here, before any model is built, and reported as one TaoUserError per kind.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from tao_core.data.images import list_images
from tao_core.data.oneformer_ground_truth import SPLITS, load_split
from tao_core.data.serialized import SerializedList
from tao_core.processing.oneformer import normalisation
from tao_core.spec.access import spec_get, spec_get_default
from tao_core.specs.oneformer_dataset import DatasetConfig
from tao_core.specs.oneformer_model import OneFormerDecoderConfig, SemSegHeadConfig, TextEncoderConfig
from tao_pytorch.detr.data.loader import TaoDataLoader
from tao_pytorch.oneformer.data.dataset import OneFormerDataset, OneFormerImageDataset, collate_oneformer
from tao_pytorch.oneformer.data.transforms import aug_field, build_transforms

logger = logging.getLogger(__name__)

# The task evaluated on a split of each format unless the caller names one.
EVAL_TASK = {"semantic": "semantic", "instance": "instance", "panoptic": "panoptic"}


def _model_field(cfg: Any, section: str, name: str, schema: type) -> Any:
    return spec_get_default(spec_get(spec_get(cfg, "model"), section), name, schema)


def build_dataset(cfg: Any, split: str, *, task: str | None = None, check_files: bool = True) -> OneFormerDataset:
    """The OneFormerDataset of dataset.<split>. Training draws each sample's task from
    dataset.task_prob_train (TAO's field); other splits give the targets
    of `task` (default: the split format's own task)."""
    dataset_cfg = spec_get(cfg, "dataset")
    ignore = int(_model_field(cfg, "sem_seg_head", "ignore_value", SemSegHeadConfig))
    fmt, records, table = load_split(dataset_cfg, split, ignore, check_files)
    table.check_fits(int(_model_field(cfg, "sem_seg_head", "num_classes", SemSegHeadConfig)))
    num_queries = int(_model_field(cfg, "one_former", "num_object_queries", OneFormerDecoderConfig))
    n_ctx = int(_model_field(cfg, "text_encoder", "n_ctx", TextEncoderConfig))
    train = split == "train"
    if spec_get_default(dataset_cfg, "dataset_type", DatasetConfig) == "serialized":
        records = SerializedList(records)
    mean, std = normalisation(dataset_cfg)
    task_prob = spec_get_default(dataset_cfg, "task_prob_train", DatasetConfig)
    return OneFormerDataset(
        fmt, records, table, build_transforms(spec_get(dataset_cfg, "augmentation"), train),
        num_text_queries=num_queries - n_ctx, ignore_value=ignore, mean=mean, std=std,
        task=None if train else (task or EVAL_TASK[fmt]),
        task_prob={k: float(spec_get(task_prob, k, 0.0)) for k in ("semantic", "instance", "panoptic")},
        cutmix_prob=float(spec_get_default(dataset_cfg, "cutmix_prob", DatasetConfig)) if train else 0.0,
        task_seq_len=int(spec_get_default(dataset_cfg, "task_seq_len", DatasetConfig)),
        max_seq_len=int(spec_get_default(dataset_cfg, "max_seq_len", DatasetConfig)),
    )


def build_inference_dataset(cfg: Any, images_dir: str | Sequence[str],
                            field: str = "inference.images_dir") -> OneFormerImageDataset:
    dataset_cfg = spec_get(cfg, "dataset")
    mean, std = normalisation(dataset_cfg)
    return OneFormerImageDataset(list_images(images_dir, field),
                                 build_transforms(spec_get(dataset_cfg, "augmentation"), False), mean, std)


def fixed_pad_size(dataset_cfg: Any, train: bool) -> tuple[int, int] | None:
    """The batch size every image is padded to with augmentation.fixed_padding, else None:
    the crop size in training, test_max_size squared otherwise (what a test resize can reach)."""
    aug = spec_get(dataset_cfg, "augmentation")
    if not aug_field(aug, "fixed_padding"):
        return None
    if train:
        crop = aug_field(aug, "train_crop_size")
        return int(crop[0]), int(crop[1])
    side = int(aug_field(aug, "test_max_size"))
    return side, side


def build_dataloader(cfg: Any, split: str, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                     batch_size: int | None = None, dataset=None, **dataset_kwargs) -> DataLoader:
    """DataLoader of one split yielding collate_oneformer batches (train: shuffled, last partial batch
    dropped; others in order); `dataset` skips building one (inference, tests)."""
    dataset_cfg = spec_get(cfg, "dataset")
    split_cfg = spec_get(dataset_cfg, split) if split in SPLITS else None
    if dataset is None:
        dataset = build_dataset(cfg, split, **dataset_kwargs)
    train = split == "train"
    batch_size = int(batch_size or spec_get(split_cfg, "batch_size", 1))
    workers = int(spec_get(split_cfg, "num_workers", spec_get_default(dataset_cfg, "workers", DatasetConfig)))
    collate = functools.partial(
        collate_oneformer,
        size_divisibility=int(_model_field(cfg, "one_former", "size_divisibility", OneFormerDecoderConfig)),
        ignore_value=int(_model_field(cfg, "sem_seg_head", "ignore_value", SemSegHeadConfig)),
        pad_to=fixed_pad_size(dataset_cfg, train),
    )
    generator = torch.Generator().manual_seed(seed + rank)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed)
    else:
        sampler = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
    # A training set smaller than one batch still trains (on one short batch) rather than not at all.
    drop_last = train and len(dataset) >= batch_size
    return TaoDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
                         collate_fn=collate, generator=generator, pin_memory=torch.cuda.is_available())
