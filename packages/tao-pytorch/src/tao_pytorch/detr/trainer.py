"""`run_training(network, cfg, ctx)`: the train task of DINO and Deformable DETR.

Order (every user mistake surfaces before the first step):
 1. the train and val annotations are read and checked (category ids vs dataset.num_classes,
    missing images, ...) and the val ground truth kept for mAP;
 2. the model is built, train.freeze applied (unknown paths fail here), train.pretrained_model_path
    loaded (tensors of another shape, e.g. heads of another num_classes, skipped with a warning);
 3. the checkpoint to resume from is chosen: train.resume_training_checkpoint_path, else
    `<results_dir>/train/<net>_model_latest.pth` when it exists;
 4. Lightning fits: TensorBoard logs in <results_dir>/train/lightning_logs, checkpoints
    `model_epoch_XXX_step_XXXXX.pth` every train.checkpoint_interval epochs and the
    `dino_model_latest.pth` / `dd_model_latest.pth` link, all written atomically (encrypted
    with ctx.key when given).

Devices: a GPU run when torch sees one (devices = train.num_gpus, or train.gpu_ids when they
name that many), else CPU with train.num_gpus processes (DDP over gloo when > 1). Several
processes use Lightning's DDP: the command is re-launched per rank, so a script calling this
must do so under `if __name__ == "__main__":` (the `tao` / `dino` commands do).
Precision: fp16 -> "16-mixed" on GPU; on CPU fp16 falls back to fp32 with a warning (no fp16
autocast on CPU, and bf16 autocast is slower than fp32 on most CPUs).
distributed_strategy ddp_sharded (TAO's fairscale sharded DDP, i.e. ZeRO-2): on GPUs Lightning's
FSDP with SHARD_GRAD_OP (gradients and optimizer state sharded, full state dict in checkpoints);
on CPU, where Lightning's FSDP is not available, DDP with the optimizer state sharded by torch's
ZeroRedundancyOptimizer (said in the log).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import pytorch_lightning as pl
import torch

from tao_core.data.coco import CocoIndex
from tao_core.errors import TaoUserError
from tao_core.io.paths import require_file
from tao_core.results.run_dir import record_experiment
from tao_core.results.stop import TaskStopped, current_stop
from tao_pytorch.common.checkpoint import load_model_weights
from tao_pytorch.common.checkpoint_io import TaoCheckpointIO, TaoModelCheckpoint
from tao_pytorch.common.console import progress, quiet_dependency_noise
from tao_pytorch.common.training_safety import ProgressGuard, check_resume_fits
from tao_pytorch.detr.build import build_model
from tao_pytorch.detr.data.loader import build_dataloader, build_dataset
from tao_pytorch.detr.data.samplers import SPLITTING_SAMPLERS
from tao_pytorch.detr.data.transforms import describe_eval_input
from tao_pytorch.detr.lightning_module import DetrLightningModule

log = logging.getLogger(__name__)

# TAO's checkpoint names: <prefix>_model_latest.pth
LATEST_PREFIX = {"dino": "dino", "deformable_detr": "dd"}
CHECKPOINT_SUFFIXES = (".pth", ".tlt")


def latest_checkpoint_name(network: str) -> str:
    """"dino_model_latest" / "dd_model_latest" (without the .pth extension)."""
    return f"{LATEST_PREFIX[network]}_model_latest"


class _TrainingModule(DetrLightningModule):
    """DetrLightningModule that also builds its dataloaders once the ranks are known."""

    def __init__(self, network: str, cfg: Any, datasets: dict, **kwargs: Any):
        super().__init__(network, cfg, **kwargs)
        self._datasets = datasets

    def _rank_world(self) -> tuple[int, int]:
        return self.global_rank, self.trainer.world_size

    def train_dataloader(self):
        rank, world = self._rank_world()
        ds_cfg = self.cfg.dataset
        dataset = self._datasets["train"]
        if (world > 1 and ds_cfg.dataset_type == "default" and ds_cfg.train_sampler in SPLITTING_SAMPLERS):
            dataset = None  # this rank reads its own share of the json files
        return build_dataloader(ds_cfg, "train", rank=rank, world_size=world, seed=int(self.cfg.train.seed),
                                dataset=dataset)

    def val_dataloader(self):
        rank, world = self._rank_world()
        return build_dataloader(self.cfg.dataset, "val", rank=rank, world_size=world, dataset=self._datasets["val"])


def val_ground_truth(dataset) -> dict:
    """COCO ground truth of a val CocoDetectionDataset with the reader's (renumbered) image ids."""
    records = [dataset.records[i] for i in range(len(dataset))]
    return CocoIndex(records, dataset.categories, dataset.sources, {}).to_coco_dict()


def resolve_resume(network: str, cfg: Any, results_dir: str) -> str | None:
    """The checkpoint to resume from: train.resume_training_checkpoint_path, else the latest one
    in results_dir when present, else None (a fresh start)."""
    given = cfg.train.resume_training_checkpoint_path
    if given:
        if not str(given).endswith(CHECKPOINT_SUFFIXES):
            raise TaoUserError(
                f"train.resume_training_checkpoint_path: {given} must be a .pth or .tlt checkpoint")
        require_file(given, "train.resume_training_checkpoint_path", "checkpoint file (.pth)")
        log.info("resuming training from %s (train.resume_training_checkpoint_path)", given)
        return str(given)
    latest = os.path.join(results_dir, latest_checkpoint_name(network) + ".pth")
    if os.path.lexists(latest):
        if not os.path.exists(latest):
            raise TaoUserError(
                f"{latest} points to {os.readlink(latest)}, which no longer exists; restore that file, set "
                "train.resume_training_checkpoint_path, or delete the link to start training from scratch"
            )
        log.info("resuming training from %s (latest checkpoint in the results folder)", latest)
        return latest
    return None


def _accelerator_and_devices(train: Any) -> tuple[str, Any, str]:
    if torch.cuda.is_available():
        gpu_ids = list(train.gpu_ids or [])
        devices = gpu_ids if len(gpu_ids) == train.num_gpus else train.num_gpus
        precision = "16-mixed" if train.precision == "fp16" else "32-true"
        return "gpu", devices, precision
    if train.num_gpus > 1:
        log.info("no GPU found: training with %d CPU processes (DDP over gloo)", train.num_gpus)
    if train.precision == "fp16":
        log.warning("train.precision=fp16 needs a GPU (automatic mixed precision); on CPU training runs in fp32")
    return "cpu", train.num_gpus, "32-true"


def _strategy(train: Any, accelerator: str, world_size: int):
    if world_size == 1:
        if train.distributed_strategy == "ddp_sharded":
            log.info("train.distributed_strategy=ddp_sharded has nothing to shard with one process; plain training")
        return "auto"
    from pytorch_lightning.strategies import DDPStrategy

    if train.distributed_strategy == "ddp_sharded" and accelerator == "gpu":
        from pytorch_lightning.strategies import FSDPStrategy

        return FSDPStrategy(sharding_strategy="SHARD_GRAD_OP", state_dict_type="full")
    if train.distributed_strategy == "ddp_sharded":
        log.info("train.distributed_strategy=ddp_sharded on CPU: Lightning's FSDP needs GPUs; "
                 "DDP with the optimizer state sharded across ranks (ZeroRedundancyOptimizer) instead")
    # The models keep every parameter in the graph (DINO adds its denoising embedding even when
    # a batch builds no denoising query), so DDP needs no unused-parameter search.
    return DDPStrategy(find_unused_parameters=False, process_group_backend="nccl" if accelerator == "gpu" else "gloo")


def accelerator_of(trainer: pl.Trainer) -> str:
    return "gpu" if trainer.strategy.root_device.type == "cuda" else "cpu"


def build_trainer(network: str, cfg: Any, results_dir: str, key: str | None, steps_per_epoch: int,
                  status: Any = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer of a train spec (see the module docstring)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    train = cfg.train
    accelerator, devices, precision = _accelerator_and_devices(train)
    world_size = (len(devices) if isinstance(devices, list) else int(devices)) * int(train.num_nodes)
    checkpoint_cb = TaoModelCheckpoint(results_dir, latest_checkpoint_name(network),
                                       every_n_epochs=int(train.checkpoint_interval))
    quiet_dependency_noise()
    shown = progress(steps_per_epoch)  # a tqdm bar on a terminal, else a log line every few steps
    kwargs = dict(
        accelerator=accelerator,
        devices=devices,
        num_nodes=int(train.num_nodes),
        strategy=_strategy(train, accelerator, world_size),
        precision=precision,
        max_epochs=int(train.num_epochs),
        check_val_every_n_epoch=int(train.validation_interval),
        gradient_clip_val=float(train.clip_grad_norm) or None,
        gradient_clip_algorithm="norm",
        default_root_dir=results_dir,
        logger=TensorBoardLogger(save_dir=results_dir, name="lightning_logs"),
        # ProgressGuard: stop on SIGTERM/SIGINT at a step's end, checkpoint on the way out of any exception
        callbacks=[checkpoint_cb, ProgressGuard(checkpoint_cb, status), *shown["callbacks"]],
        plugins=[TaoCheckpointIO(key)],
        enable_progress_bar=shown["enable_progress_bar"],
        enable_model_summary=bool(train.verbose),
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        use_distributed_sampler=False,  # the loaders split the data across ranks themselves
    )
    kwargs.update(overrides)
    # results_dir/train also holds experiment.yaml, status.json and the log: expected, not a problem
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    return pl.Trainer(**kwargs)


def run_training(network: str, cfg: Any, ctx: Any, **trainer_overrides: Any) -> pl.Trainer:
    """Train `network` ("dino" / "deformable_detr") on spec `cfg`; ctx: tao_core TaskContext
    (results_dir = <results_dir>/train, key, status). Returns the fitted Trainer."""
    train = cfg.train
    results_dir = ctx.results_dir
    os.makedirs(results_dir, exist_ok=True)
    pl.seed_everything(int(train.seed), workers=True, verbose=False)

    # 1. data: read and checked now, so a bad annotation fails before the model is built
    datasets = {split: build_dataset(cfg.dataset, split) for split in ("train", "val")}
    batch_size = int(cfg.dataset.batch_size)
    if len(datasets["train"]) < batch_size:
        raise TaoUserError(
            f"dataset.batch_size={batch_size} but the training set has {len(datasets['train'])} images: "
            "the last incomplete batch is dropped, so no step would run; lower dataset.batch_size")
    val_gt = val_ground_truth(datasets["val"])
    log.info("train: %d images, val: %d images, %d classes", len(datasets["train"]), len(datasets["val"]),
             cfg.dataset.num_classes)
    log.info("validation (val_mAP) sees the val images %s; evaluate with evaluate.input_height/input_width "
             "(the export size) resizes to exactly that size, so its mAP differs",
             describe_eval_input(cfg.dataset.augmentation))

    # 2. model
    model = build_model(network, cfg)
    if train.pretrained_model_path:
        report = load_model_weights(model, train.pretrained_model_path, key=ctx.key)
        log.info("loaded %d tensors from train.pretrained_model_path %s (%d skipped for their shape)",
                 len(report.loaded), train.pretrained_model_path, len(report.skipped_shape))
    module = _TrainingModule(network, cfg, datasets, status=ctx.status, val_gt=val_gt, model=model)

    # 3. resume: the checkpoint must fit this spec's model (a changed num_classes / model is one line)
    ckpt_path = resolve_resume(network, cfg, results_dir)
    if ckpt_path:
        check_resume_fits(ckpt_path, model, ctx.key, results_dir, cfg, latest=not train.resume_training_checkpoint_path)

    # 4. fit
    steps = max(1, len(datasets["train"]) // batch_size // max(1, int(train.num_gpus) * int(train.num_nodes)))
    trainer = build_trainer(network, cfg, results_dir, ctx.key, steps, getattr(ctx, "status", None),
                            **trainer_overrides)
    # FSDP shards the optimizer state itself; the CPU fallback shards it with ZeroRedundancyOptimizer
    module.shard_optimizer = (
        train.distributed_strategy == "ddp_sharded" and trainer.world_size > 1 and accelerator_of(trainer) == "cpu"
    )
    record_experiment(ctx)  # every check passed: experiment.yaml now describes this run's checkpoints
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
    except SystemExit as exc:  # Lightning's own SIGTERM exit (SIGTERMException) is not a success
        stop = current_stop()
        if stop is not None and stop.requested:
            raise stop.exception() from None
        if type(exc).__name__ == "SIGTERMException":
            raise TaskStopped(15) from None
        raise
    return trainer
