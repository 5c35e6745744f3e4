"""build_dataloader / samplers: workers, serialized index, batch shapes, sampler options."""

import logging
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler

from tao_core.errors import TaoUserError
from tao_pytorch.detr.data import build_dataloader, build_dataset, collate_detr
from tao_pytorch.detr.data.samplers import build_train_sampler, source_balanced_weights, split_sources


def _check_batch(images, mask, targets, batch_size):
    assert images.shape[0] == mask.shape[0] == len(targets) == batch_size
    assert images.shape[1] == 3 and images.shape[2:] == mask.shape[1:]
    for k, tgt in enumerate(targets):
        h, w = tgt["size"].tolist()
        assert not mask[k, :h, :w].any() and mask[k].sum() == mask[k].numel() - h * w
        assert ((tgt["boxes"] >= 0) & (tgt["boxes"] <= 1)).all()
        assert len(tgt["boxes"]) == len(tgt["labels"])


def test_train_loader_two_workers_serialized(make_cfg):
    cfg = make_cfg(workers=2, batch_size=3)
    loader = build_dataloader(cfg, "train", seed=5)
    assert loader.num_workers == 2 and loader.dataset.records.tensors[0].is_shared()
    n = 0
    shapes = set()
    for images, mask, targets in loader:
        _check_batch(images, mask, targets, 3)
        shapes.add(tuple(images.shape[2:]))
        n += 1
    assert n == len(loader.dataset) // 3  # drop_last
    # fixed_padding: landscape-only batches are 128x200, any portrait image makes the batch 200x200 at most.
    assert shapes <= {(128, 200), (200, 128), (200, 200)}


def test_train_loader_spawned_worker(make_cfg):
    # spawn pickles the dataset into the worker: the shared-memory index must survive that.
    cfg = make_cfg(batch_size=2)
    dataset = build_dataset(cfg, "train")
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_detr,
                        multiprocessing_context="spawn")
    batches = iter(loader)
    images, mask, targets = next(batches)
    del batches  # shut the worker down here, not at some later garbage collection
    _check_batch(images, mask, targets, 2)


def test_fixed_padding_constant_batch_shape_for_landscape_batches(make_cfg):
    random.seed(0)
    loader = build_dataloader(make_cfg(batch_size=1), "train")
    shapes = {tuple(images.shape[2:]) for images, _, targets in loader
              if targets[0]["size"][0] <= targets[0]["size"][1]}
    assert shapes == {(128, 200)}


def test_val_loader_in_order_nothing_dropped(make_cfg):
    cfg = make_cfg(batch_size=4, dataset_type="default")
    loader = build_dataloader(cfg, "val")
    ids = [int(t["image_id"]) for _, _, targets in loader for t in targets]
    assert ids == list(range(1, len(loader.dataset) + 1))


def test_eval_falls_back_to_val_and_exact_input_size(make_cfg):
    loader = build_dataloader(make_cfg(batch_size=2), "eval", input_size=(64, 80))
    images, mask, _ = next(iter(loader))
    assert images.shape == (2, 3, 64, 80) and not mask.any()


def test_infer_split_lists_image_dirs(make_cfg, coco_sources):
    cfg = make_cfg(batch_size=2, infer_data_sources={"image_dir": [coco_sources["val"][0]["image_dir"]]})
    images, mask, targets, skipped = next(iter(build_dataloader(cfg, "infer")))  # skipped: unreadable files
    assert images.shape[0] == 2 and "path" in targets[0]


def test_missing_sources_is_a_user_error(make_cfg):
    with pytest.raises(TaoUserError, match="train_data_sources"):
        build_dataloader(make_cfg(train_data_sources=[]), "train")


def test_sampler_options(make_cfg):
    ds = build_dataset(make_cfg(), "train")
    assert isinstance(build_train_sampler("default_sampler", ds), RandomSampler)
    assert isinstance(build_train_sampler("default_sampler", ds, rank=1, world_size=2), DistributedSampler)
    assert isinstance(build_train_sampler("non_uniform_sampler", ds), RandomSampler)
    uni = build_train_sampler("uniform_sampler", ds)
    assert isinstance(uni, WeightedRandomSampler) and len(list(uni)) == len(ds)
    with pytest.raises(TaoUserError, match="'default_sampler', 'non_uniform_sampler'"):
        build_train_sampler("balanced", ds)
    with pytest.raises(TaoUserError, match="train_sampler"):
        build_dataloader(make_cfg(train_sampler="balanced"), "train")


def test_uniform_weights_balance_sources():
    ids = np.array([0] * 90 + [1] * 10 + [2] * 300)
    w = source_balanced_weights(ids)
    mass = [float(w[ids == s].sum()) for s in range(3)]
    np.testing.assert_allclose(mass, [1.0, 1.0, 1.0])
    draws = torch.multinomial(w, 30000, replacement=True, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(np.bincount(ids[draws]) / 30000, [1 / 3] * 3, atol=0.02)


def test_split_sources_partitions_json_files(tmp_path):
    for i in range(5):
        (tmp_path / f"shard_{i}.json").write_text("{}")
    src = [{"image_dir": "imgs", "json_file": str(tmp_path / "shard_*.json")}]
    shares = [split_sources(src, r, 2) for r in range(2)]
    assert [len(s) for s in shares] == [3, 2]
    files = sorted(f["json_file"] for s in shares for f in s)
    assert files == sorted(str(tmp_path / f"shard_{i}.json") for i in range(5))
    with pytest.raises(TaoUserError, match="only 5"):
        split_sources(src, 0, 8)


def test_splitting_sampler_loads_only_this_ranks_share(make_cfg, coco_sources):
    cfg = make_cfg(dataset_type="default", train_sampler="non_uniform_sampler",
                   train_data_sources=coco_sources["train"] + coco_sources["val"])
    n_train = len(build_dataset(make_cfg(dataset_type="default"), "train"))
    assert len(build_dataset(cfg, "train", rank=0, world_size=2)) == n_train
    uniform = build_dataloader(make_cfg(dataset_type="default", train_sampler="uniform_sampler"), "train")
    assert isinstance(uniform.batch_sampler.sampler, WeightedRandomSampler)


def test_serialized_ignores_train_sampler_with_warning(make_cfg, caplog):
    with caplog.at_level(logging.WARNING):
        loader = build_dataloader(make_cfg(train_sampler="uniform_sampler"), "train")
    assert isinstance(loader.batch_sampler.sampler, RandomSampler)
    assert "no effect with dataset_type serialized" in caplog.text
