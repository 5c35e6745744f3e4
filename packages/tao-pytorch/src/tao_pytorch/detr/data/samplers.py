"""`dataset.train_sampler`: how training images are drawn, and which json files a rank loads.

default_sampler      every rank loads every source; shuffled (DistributedSampler across ranks).
non_uniform_sampler  rank r loads only json files r, r + W, r + 2W, ... (W = world size) so a
                     dataset too big for one process' RAM is split across ranks; shuffled
                     within the rank's share.
uniform_sampler      the same split, then sources (json files) are drawn with equal
                     probability, images uniformly within a source, with replacement;
                     len(share) draws per epoch. TAO weighs each image by (N - n_source) / N,
                     which balances exactly two sources only (and gives weight 0 with a single
                     file); equal mass per source is what that formula approximates.

TAO reads train_sampler only when dataset_type is default and runs the two splitting samplers
only on multi-GPU jobs; here they also work on one process (the split is then the whole set).
"""

from __future__ import annotations

import glob
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, WeightedRandomSampler

from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get

TRAIN_SAMPLERS = ("default_sampler", "non_uniform_sampler", "uniform_sampler")
SPLITTING_SAMPLERS = ("non_uniform_sampler", "uniform_sampler")


def check_sampler(name: str) -> None:
    if name not in TRAIN_SAMPLERS:
        raise TaoUserError(f"dataset.train_sampler: got {name!r}; expected one of {list(TRAIN_SAMPLERS)}")


def split_sources(sources: Any, rank: int, world_size: int) -> list[dict]:
    """This rank's share of the json files: file i goes to rank i % world_size (globs expanded)."""
    if isinstance(sources, dict) or not isinstance(sources, Sequence):
        sources = [sources]
    files = []
    for src in sources:
        image_dir, json_file = spec_get(src, "image_dir"), str(spec_get(src, "json_file"))
        matches = sorted(glob.glob(json_file)) if glob.has_magic(json_file) else [json_file]
        files += [{"image_dir": image_dir, "json_file": m} for m in matches] or [{"image_dir": image_dir,
                                                                                   "json_file": json_file}]
    if len(files) < world_size:
        raise TaoUserError(
            f"dataset.train_sampler: non_uniform_sampler / uniform_sampler give each of the {world_size} ranks "
            f"its own json files, but the training sources have only {len(files)}; shard the annotations into at "
            "least as many files (the convert task) or use default_sampler"
        )
    return files[rank::world_size]


def source_balanced_weights(source_ids: np.ndarray) -> torch.Tensor:
    """Per-image weights giving every source the same total probability."""
    counts = np.bincount(source_ids)
    return torch.as_tensor(1.0 / counts[source_ids], dtype=torch.float64)


def build_train_sampler(name: str, dataset, rank: int = 0, world_size: int = 1, seed: int = 0) -> Sampler:
    """The sampler of `name` for a dataset already restricted to this rank's share (see split_sources).

    With default_sampler on several ranks the trainer must call `sampler.set_epoch(epoch)`.
    """
    check_sampler(name)
    generator = torch.Generator().manual_seed(seed + rank)
    if name == "default_sampler":
        if world_size > 1:
            return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        return RandomSampler(dataset, generator=generator)
    if name == "non_uniform_sampler":
        return RandomSampler(dataset, generator=generator)
    return WeightedRandomSampler(source_balanced_weights(dataset.source_ids()), num_samples=len(dataset),
                                 replacement=True, generator=generator)
