"""`oneformer train -e spec.yaml [-r RESULTS_DIR] [-k KEY] [key=value ...]`.

Order (every user mistake surfaces before the first step):
 1. dataset.train and dataset.val are read and every file checked (missing images or PNGs,
    bad annotations, classes vs model.sem_seg_head.num_classes): one line naming the files;
 2. the model is built (model.backbone.freeze_at and pretrained_weights applied by the backbone
    builder), train.freeze applied, train.pretrained_model_path (or its alias
    train.pretrained_model) loaded: tensors of another shape (heads of another num_classes)
    skipped with a warning;
 3. tao_pytorch.common.training.fit: resume from train.resume_training_checkpoint_path, else
    `<results_dir>/train/oneformer_model_latest.pth` when it exists (checked against the model),
    then the Trainer every network shares: checkpoints `model_epoch_XXX_step_XXXXX.pth` (DINO's
    names; seed 004 prints model_epoch_<n>.pth) + the `oneformer_model_latest.pth` link, atomic,
    encrypted with -k; status lines with train_loss, val_loss and val_PQ / val_mAP / val_mIoU;
    train.iters_per_epoch caps the steps of an epoch (Lightning's limit_train_batches).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

from tao_core.errors import TaoUserError
from tao_core.tasks.oneformer import MAIN_METRIC
from tao_pytorch.common.training import fit, load_pretrained, start_run
from tao_pytorch.oneformer.data import build_dataset
from tao_pytorch.oneformer.lightning_module import OneFormerLightningModule
from tao_pytorch.oneformer.network import NETWORK

log = logging.getLogger(__name__)


def run_training(cfg: Any, ctx: Any, **trainer_overrides: Any) -> pl.Trainer:
    """Train the spec's OneFormer; ctx: tao_core TaskContext (results_dir = <results_dir>/train, key,
    status). trainer_overrides go to the Lightning Trainer last (tests). Returns the fitted Trainer."""
    train = cfg.train
    start_run(train, ctx.results_dir)

    # 1. data, checked before the model exists
    datasets = {split: build_dataset(cfg, split) for split in ("train", "val")}
    batch_size = int(cfg.dataset.train.batch_size)
    world = max(1, int(train.num_gpus) * int(train.num_nodes))
    if len(datasets["train"]) < world:
        raise TaoUserError(f"dataset.train has {len(datasets['train'])} images for {world} training processes: "
                           "every process needs at least one")
    steps = max(1, len(datasets["train"]) // world // batch_size)
    if train.iters_per_epoch:
        if int(train.iters_per_epoch) > steps:
            log.info("train.iters_per_epoch=%d is more than one pass over the training set (%d steps): epochs "
                     "stop at %d steps", train.iters_per_epoch, steps, steps)
        steps = min(steps, int(train.iters_per_epoch))
        trainer_overrides.setdefault("limit_train_batches", steps)
    log.info("train: %d images (%s), val: %d images (%s, scored by %s), %d steps per epoch",
             len(datasets["train"]), datasets["train"].fmt, len(datasets["val"]), datasets["val"].fmt,
             f"val_{MAIN_METRIC[datasets['val'].fmt]}", steps)

    # 2. model
    model = NETWORK.build_model(cfg, with_text=True)
    load_pretrained(model, train, ctx.key)
    module = OneFormerLightningModule(cfg, datasets, model=model)

    # 3. resume check, Trainer, fit
    return fit(module, cfg, ctx, NETWORK.checkpoint_prefix, steps, **trainer_overrides)


def run(cfg, ctx):
    run_training(cfg, ctx)
