"""What every network's training shares: the Lightning Trainer of a train spec, resume, fit.

A network's train task builds its data and its LightningModule, then calls

    trainer = fit(module, cfg, ctx, checkpoint_prefix="<net>", steps_per_epoch=n)

which (1) picks the checkpoint to resume from (tao_core.results.checkpoints: the spec's
train.resume_training_checkpoint_path, else `<results_dir>/train/<net>_model_latest.pth`) and
checks it fits `module.model`, (2) builds the Trainer (`build_trainer`), (3) records
experiment.yaml and (4) fits, turning Lightning's own SIGTERM exit into the task's stop.

The Trainer (`build_trainer`):
- devices: a GPU run when torch sees one (devices = train.num_gpus, or train.gpu_ids when they
  name that many), else CPU with train.num_gpus processes (DDP over gloo when > 1). Several
  processes use Lightning's DDP: the command is re-launched per rank, so a script calling this
  must do so under `if __name__ == "__main__":` (the `tao` / network commands do).
- precision: fp16 -> "16-mixed" on GPU; on CPU fp16 falls back to fp32 with a warning (no fp16
  autocast on CPU, and bf16 autocast is slower than fp32 on most CPUs).
- distributed_strategy ddp_sharded (TAO's fairscale sharded DDP, i.e. ZeRO-2): on GPUs
  Lightning's FSDP with SHARD_GRAD_OP (gradients and optimizer state sharded, full state dict in
  checkpoints); on CPU, where Lightning's FSDP is not available, DDP with the optimizer state
  sharded by torch's ZeroRedundancyOptimizer (`fit` sets `module.shard_optimizer`; said in the log).
- checkpoints: `model_epoch_XXX_step_XXXXX.pth` every train.checkpoint_interval epochs and the
  `<net>_model_latest.pth` link, written atomically (encrypted with ctx.key when given), a
  resumable one on any stop (tao_pytorch.common.checkpoint_io, training_safety).
- status lines (`EpochStatusLine`): after every epoch a RUNNING line with epoch, max_epoch, eta
  and kpi {train_loss, val_loss (epochs that validated), and the module's `val_metrics`}.
- TensorBoard logs in <results_dir>/train/lightning_logs; a progress bar on a terminal, a log line
  every few steps otherwise.

The spec's train section is TAO's (num_gpus, gpu_ids, num_nodes, seed, num_epochs,
checkpoint_interval, validation_interval, clip_grad_norm, precision, distributed_strategy,
verbose, pretrained_model_path, resume_training_checkpoint_path); every network has it.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from tao_core.errors import TaoUserError
from tao_core.results.checkpoints import latest_checkpoint_name, resolve_resume
from tao_core.results.run_dir import record_experiment
from tao_core.results.stop import TaskStopped, current_stop
from tao_pytorch.common.checkpoint import load_model_weights
from tao_pytorch.common.checkpoint_io import TaoCheckpointIO, TaoModelCheckpoint
from tao_pytorch.common.console import progress, quiet_dependency_noise
from tao_pytorch.common.training_safety import ProgressGuard, check_resume_fits

log = logging.getLogger(__name__)


def start_run(train: Any, results_dir: str) -> None:
    """The results folder exists and every random generator is seeded from train.seed."""
    os.makedirs(results_dir, exist_ok=True)
    pl.seed_everything(int(train.seed), workers=True, verbose=False)


def load_pretrained(model: torch.nn.Module, train: Any, key: str | None) -> None:
    """train.pretrained_model_path into `model`; tensors of another shape (heads of another
    num_classes) are skipped with a warning."""
    if train.pretrained_model_path:
        report = load_model_weights(model, train.pretrained_model_path, key=key)
        log.info("loaded %d tensors from train.pretrained_model_path %s (%d skipped for their shape)",
                 len(report.loaded), train.pretrained_model_path, len(report.skipped_shape))


def accelerator_and_devices(train: Any) -> tuple[str, Any, str]:
    """(accelerator, devices, precision) of a train section on this machine."""
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


def training_strategy(train: Any, accelerator: str, world_size: int):
    """Lightning's strategy for train.distributed_strategy with `world_size` processes."""
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
    # The networks keep every parameter in the graph (e.g. a denoising embedding is added even
    # when a batch builds no denoising query), so DDP needs no unused-parameter search.
    return DDPStrategy(find_unused_parameters=False, process_group_backend="nccl" if accelerator == "gpu" else "gloo")


def accelerator_of(trainer: pl.Trainer) -> str:
    return "gpu" if trainer.strategy.root_device.type == "cuda" else "cpu"


class EpochStatusLine(pl.Callback):
    """After each training epoch (rank zero): a log line and a RUNNING status.json line with
    epoch, max_epoch, eta (mean of the last 5 epochs' times) and kpi: train_loss, and on epochs
    that validated val_loss plus the module's `val_metrics` (a dict the module fills at the end
    of its validation, e.g. val_mAP)."""

    def __init__(self, status: Any = None):
        self.status = status
        self._epoch_start: float | None = None
        self._epoch_times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None:
            self._epoch_times.append(time.monotonic() - self._epoch_start)
        metrics = trainer.callback_metrics
        val_metrics = dict(getattr(pl_module, "val_metrics", None) or {})
        kpi = {}
        if "train_loss_epoch" in metrics:
            kpi["train_loss"] = float(metrics["train_loss_epoch"])
        if val_metrics and "val_loss" in metrics:
            kpi["val_loss"] = float(metrics["val_loss"])
        kpi.update(val_metrics)
        epoch = trainer.current_epoch + 1  # epochs completed
        max_epoch = trainer.max_epochs
        eta = float(np.mean(self._epoch_times[-5:])) * max(max_epoch - epoch, 0) if self._epoch_times else None
        if not trainer.is_global_zero:
            return
        if self._epoch_times:
            log.info("epoch %d/%d done in %.1f s: %s", epoch, max_epoch, self._epoch_times[-1],
                     ", ".join(f"{k} {v:.4f}" for k, v in kpi.items()))
        if self.status is not None:
            self.status.write("RUNNING", "Training loop in progress", epoch=epoch, max_epoch=max_epoch, eta=eta,
                              kpi=kpi)


def build_trainer(train: Any, results_dir: str, key: str | None, steps_per_epoch: int, checkpoint_prefix: str,
                  status: Any = None, **overrides: Any) -> pl.Trainer:
    """The Lightning Trainer of spec section `train` (see the module docstring); `overrides` are
    passed to pl.Trainer last (tests: limit_train_batches, ...)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    accelerator, devices, precision = accelerator_and_devices(train)
    world_size = (len(devices) if isinstance(devices, list) else int(devices)) * int(train.num_nodes)
    checkpoint_cb = TaoModelCheckpoint(results_dir, latest_checkpoint_name(checkpoint_prefix),
                                       every_n_epochs=int(train.checkpoint_interval))
    quiet_dependency_noise()
    shown = progress(steps_per_epoch)  # a tqdm bar on a terminal, else a log line every few steps
    kwargs = dict(
        accelerator=accelerator,
        devices=devices,
        num_nodes=int(train.num_nodes),
        strategy=training_strategy(train, accelerator, world_size),
        precision=precision,
        max_epochs=int(train.num_epochs),
        check_val_every_n_epoch=int(train.validation_interval),
        gradient_clip_val=float(train.clip_grad_norm) or None,
        gradient_clip_algorithm="norm",
        default_root_dir=results_dir,
        logger=TensorBoardLogger(save_dir=results_dir, name="lightning_logs"),
        # ProgressGuard: stop on SIGTERM/SIGINT at a step's end, checkpoint on the way out of any exception
        callbacks=[checkpoint_cb, ProgressGuard(checkpoint_cb, status), EpochStatusLine(status),
                   *shown["callbacks"]],
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


def fit(module: pl.LightningModule, cfg: Any, ctx: Any, checkpoint_prefix: str, steps_per_epoch: int,
        **trainer_overrides: Any) -> pl.Trainer:
    """Resume check, Trainer, experiment record and fit of `module` (its network is
    `module.model`); ctx: tao_core TaskContext (results_dir = <results_dir>/train, key, status).
    Returns the fitted Trainer."""
    train = cfg.train
    results_dir = ctx.results_dir
    # the checkpoint must fit this spec's model (a changed num_classes / model is one line)
    ckpt_path = resolve_resume(train.resume_training_checkpoint_path, results_dir, checkpoint_prefix)
    if ckpt_path:
        check_resume_fits(ckpt_path, module.model, ctx.key, results_dir, cfg,
                          latest=not train.resume_training_checkpoint_path)
    trainer = build_trainer(train, results_dir, ctx.key, steps_per_epoch, checkpoint_prefix,
                            getattr(ctx, "status", None), **trainer_overrides)
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
    except RuntimeError as exc:
        if trainer.world_size > 1 and any(mark in str(exc) for mark in PEER_FAILED_MARKS):
            raise TaoUserError(_peer_failed_message(trainer)) from None
        raise
    return trainer


# How torch.distributed reports, on the ranks still running, that another rank's process died
# (gloo's TCP pair, NCCL's watchdog): the cause is that rank's own error, already printed.
PEER_FAILED_MARKS = ("Connection closed by peer", "Connection reset by peer", "remote process exited",
                     "NCCL communicator was aborted")


def _peer_failed_message(trainer: pl.Trainer) -> str:
    guard = next((cb for cb in trainer.callbacks if isinstance(cb, ProgressGuard)), None)
    saved = guard.saved_on_exit if guard is not None else None
    kept = (f"the trained steps are kept in {saved}: run the same command again to resume" if saved
            else "the last checkpoint (if any) is the resume point")
    return (f"training process {trainer.global_rank} of {trainer.world_size} stopped because another one failed "
            f"(its error is printed above); {kept}")


def log_training_step(module: pl.LightningModule, loss: torch.Tensor, losses: dict, batch_size: int,
                      terms: tuple[str, ...]) -> None:
    """What every network logs per training step: train_loss (progress bar, step and epoch),
    train_<term> of its named loss terms (epoch means) and the first group's learning rate."""
    kw = {"batch_size": batch_size, "sync_dist": True}
    module.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, **kw)
    for name in terms:
        if name in losses:
            module.log(f"train_{name}", losses[name], on_step=False, on_epoch=True, **kw)
    module.log("lr", module.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=batch_size)
