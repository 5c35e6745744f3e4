"""Training never loses its progress, and a stopped training says so.

`ProgressGuard` (a Lightning callback, any network):
- SIGTERM / SIGINT: the task runner's tao_core StopSignals is switched to a cooperative stop,
  so the signal only asks; the guard stops at the end of the current training or validation
  step (within the grace period, TAO_STOP_GRACE_S), Lightning's own SIGTERM exit included.
- any exception out of the loop (a stop, a DataLoader error in validation, a bug): if steps
  were trained since the last checkpoint, a resumable checkpoint
  `model_epoch_XXX_step_XXXXX.pth` is written and the latest link pointed at it, so the next
  run in the same results dir resumes from there. The stopped status line names it. With
  several processes (DDP) the rank that failed writes it alone, without the collectives the
  other ranks can no longer join; not when the optimizer state is sharded (ddp_sharded, FSDP).
  Except when a stop interrupts an optimizer update (the grace period ran out, or a second
  signal came, between the gradients and the end of the step): the weights may hold a
  half-applied step, so nothing is written and the last checkpoint stays the resume point.
- keeps `status.progress` (epoch, step) current, for the stopped / failed status line.

`check_resume_fits`: the checkpoint a rerun would resume from must fit the spec's model; a
mismatch (num_classes or the model changed since) is one line with the two ways out.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytorch_lightning as pl
import yaml

from tao_core.errors import TaoUserError
from tao_core.results.stop import TaskStopped, current_stop
from tao_pytorch.common.checkpoint import extract_state_dict, load_checkpoint
from tao_pytorch.common.checkpoint_io import replace_link

log = logging.getLogger(__name__)


class ProgressGuard(pl.Callback):
    """See the module docstring. checkpoint_cb: the run's TaoModelCheckpoint (names and latest link)."""

    def __init__(self, checkpoint_cb: Any, status: Any = None):
        self.checkpoint_cb = checkpoint_cb
        self.status = status
        self._saved_step = -1
        self._updating = False  # between the gradients of a step and its end: weights may be mid-update
        self.saved_on_exit: str | None = None

    def _stop_if_asked(self) -> None:
        stop = current_stop()
        if stop is not None and stop.requested:
            raise stop.exception()

    def on_train_start(self, trainer, pl_module) -> None:
        stop = current_stop()
        if stop is not None:
            stop.cooperative = True  # stop at the end of a step, after saving (see on_exception)
        self._saved_step = trainer.global_step  # a resumed run has nothing new yet

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._updating = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._updating = False
        if self.status is not None:
            self.status.progress = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        self._stop_if_asked()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_if_asked()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._saved_step = trainer.global_step

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        stop = current_stop()
        stopping = isinstance(exception, (TaskStopped, SystemExit)) or (stop is not None and stop.requested)
        if trainer.global_step <= self._saved_step:
            return  # nothing trained since the last checkpoint: it is the one to resume from
        if self._updating and isinstance(exception, TaskStopped):
            note = (f"no checkpoint written on the way out: the stop interrupted the optimizer update of step "
                    f"{trainer.global_step + 1}, so the weights may hold half of it; the last checkpoint is the "
                    f"resume point")
            log.warning(note)
            if stop is not None:
                stop.notes.append(note)
            return
        name = self.checkpoint_cb.format_checkpoint_name({"epoch": trainer.current_epoch, "step": trainer.global_step})
        latest = os.path.join(self.checkpoint_cb.dirpath, self.checkpoint_cb.CHECKPOINT_NAME_LAST + ".pth")
        # An error on one of several ranks: the others wait in a collective that will never
        # complete, so the failing rank writes alone (every rank has the same weights and, unless
        # the optimizer state is sharded, the same optimizer state).
        alone = trainer.world_size > 1 and not stopping
        if alone and _optimizer_state_sharded(trainer):
            log.warning("training failed at step %d; the optimizer state is sharded across %d processes, so no "
                        "resumable checkpoint can be written by one of them on the way out",
                        trainer.global_step, trainer.world_size)
            return
        try:
            if alone:
                trainer.strategy.checkpoint_io.save_checkpoint(
                    trainer._checkpoint_connector.dump_checkpoint(weights_only=False), name)
                replace_link(name, latest)
            else:
                trainer.save_checkpoint(name)
                if trainer.is_global_zero:
                    replace_link(name, latest)
        except Exception as err:  # noqa: BLE001 - the original exception is what the user must see
            log.error("could not write a checkpoint on the way out (%s: %s)", type(err).__name__, err)
            return
        self.saved_on_exit = name
        note = f"resumable checkpoint written: {name} (epoch {trainer.current_epoch + 1}, step {trainer.global_step})"
        log.warning("%s; run the same command again to resume", note)
        if stop is not None:
            stop.notes.append(note)
        if self.status is not None and trainer.is_global_zero:
            self.status.write("RUNNING", note + "; run the same command again to resume", verbosity="WARNING",
                              epoch=trainer.current_epoch + 1, step=trainer.global_step)


def _optimizer_state_sharded(trainer: Any) -> bool:
    """True when each rank holds only part of the optimizer state (ZeroRedundancyOptimizer, FSDP):
    gathering it is a collective the other ranks will not join after an error on this one."""
    if "FSDP" in type(trainer.strategy).__name__:
        return True
    return any(hasattr(getattr(o, "_optimizer", o), "consolidate_state_dict") for o in trainer.optimizers)


def _experiment_differences(results_dir: str, cfg: Any, limit: int = 3) -> list[str]:
    """`field: old -> new` for model.* and dataset.num_classes between the previous run's
    experiment.yaml and this spec (empty when there is no readable record)."""
    path = os.path.join(results_dir, "experiment.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return []
    from omegaconf import OmegaConf

    new = OmegaConf.to_container(cfg, resolve=True)
    pairs = [("dataset.num_classes", (old.get("dataset") or {}).get("num_classes"), new["dataset"].get("num_classes"))]
    for key, value in (new.get("model") or {}).items():
        pairs.append((f"model.{key}", (old.get("model") or {}).get(key), value))
    return [f"{k} {a!r} -> {b!r}" for k, a, b in pairs if a != b][:limit]


def check_resume_fits(path: str, model: Any, key: str | None, results_dir: str, cfg: Any, latest: bool) -> None:
    """TaoUserError (one line) when the checkpoint at `path` does not fit `model`'s tensors."""
    weights = extract_state_dict(load_checkpoint(path, key, field="resume checkpoint"))
    own = model.state_dict()
    shape = [f"{n} {tuple(t.shape)} vs {tuple(own[n].shape)}" for n, t in weights.items()
             if n in own and own[n].shape != t.shape]
    missing = [n for n in own if n not in weights]
    if not shape and not missing:
        return
    differs = _experiment_differences(results_dir, cfg)
    what = "; ".join(differs) if differs else "; ".join((shape or [f"missing {n}" for n in missing])[:2])
    if latest:
        ways = (f"to train this spec, use a new results dir (-r NEW_DIR) or remove {path} "
                f"(and the model_epoch_*.pth files) to start from scratch")
    else:
        ways = "set train.resume_training_checkpoint_path to a checkpoint of this model, or leave it empty"
    raise TaoUserError(f"cannot resume from {path}: it was trained with another model than this spec ({what}); {ways}")
