"""What training prints: Lightning's own lines that say nothing to a TAO user are dropped, and a
progress bar only where someone watches it.

- `quiet_dependency_noise()`: drops Lightning's device banner ("GPU available: False, used:
  False", "TPU available: ...", "HPU available: ..."; the device is in our own log), its
  litlogger advertisement, and torch's FutureWarning about `LeafSpec` that Lightning's pytree
  helper triggers on every fit. Everything else Lightning says is kept.
- `progress(steps_per_epoch)`: Trainer keyword arguments. On a terminal, Lightning's tqdm bar;
  otherwise (a log file, a pipe, CI) no bar, whose carriage returns and control codes would
  fill the saved log, but one plain log line every N steps (`StepProgressLog`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

# Beginnings of the rank_zero_info lines of Lightning that are dropped.
_NOISE_PREFIXES = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:")
_RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE_PREFIXES)


_FILTER = _DropNoise()


def quiet_dependency_noise() -> None:
    """Install the filters (idempotent: a filter is added to a logger once)."""
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)


def log_every(steps_per_epoch: int) -> int:
    """About four progress lines per epoch, at most 50 steps apart."""
    return max(1, min(50, math.ceil(int(steps_per_epoch) / 4)))


class StepProgressLog(pl.Callback):
    """One INFO line every `every_n_steps` training steps (rank zero only):
    `epoch 2/6 step 10/40: train_loss 31.2041, 1.35 s/step`."""

    def __init__(self, every_n_steps: int):
        self.every_n_steps = max(1, int(every_n_steps))
        self._last: float | None = None
        self._last_step = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last, self._last_step = time.monotonic(), 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = batch_idx + 1
        if step % self.every_n_steps or not trainer.is_global_zero:
            return
        now = time.monotonic()
        per_step = (now - self._last) / max(1, step - self._last_step) if self._last is not None else float("nan")
        self._last, self._last_step = now, step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        total = trainer.num_training_batches
        log.info("epoch %d/%d step %d/%s: train_loss %.4f, %.2f s/step", trainer.current_epoch + 1,
                 trainer.max_epochs, step, total if total != float("inf") else "?",
                 float(loss) if loss is not None else float("nan"), per_step)


def progress(steps_per_epoch: int, stream=None) -> dict:
    """{"enable_progress_bar": ..., "callbacks": [...]} for pl.Trainer (see the module docstring)."""
    stream = sys.stdout if stream is None else stream
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    if interactive:
        return {"enable_progress_bar": True, "callbacks": []}
    return {"enable_progress_bar": False, "callbacks": [StepProgressLog(log_every(steps_per_epoch))]}
