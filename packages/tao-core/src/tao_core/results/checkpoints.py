"""Checkpoint names in a training results folder, and which checkpoint a training resumes from.

Every network trains into `<results_dir>/train/` with TAO's names:
    model_epoch_<EEE>_step_<SSSSS>.pth   every train.checkpoint_interval epochs (and on a stop)
    <prefix>_model_latest.pth            the newest of them (a link, or a copy)
The prefix is the network's (TAO's own: "dino", "dd" for Deformable DETR, "oneformer"); the
network folder that trains passes it, so nothing here knows the networks.

Framework-free, so any trainer (PyTorch, TensorFlow) can share the resume rule.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tao_core.errors import TaoUserError
from tao_core.io.paths import require_file

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".tlt")
# Lightning formats it: "model_{epoch:03d}_{step:05d}" with "_" for "=" -> model_epoch_002_step_00012
EPOCH_CHECKPOINT_FORMAT = "model_{epoch:03d}_{step:05d}"


def latest_checkpoint_name(prefix: str) -> str:
    """"<prefix>_model_latest" (no extension: Lightning adds .pth)."""
    return f"{prefix}_model_latest"


def epoch_checkpoint_name(epoch: int, step: int) -> str:
    """The file name a checkpoint of `epoch` (0-based, as Lightning counts) at global `step` gets."""
    return f"model_epoch_{int(epoch):03d}_step_{int(step):05d}.pth"


def resolve_resume(given: Any, results_dir: str, prefix: str,
                   field: str = "train.resume_training_checkpoint_path") -> str | None:
    """The checkpoint to resume from: `given` (the spec's train.resume_training_checkpoint_path)
    when set, else `<results_dir>/<prefix>_model_latest.pth` when it exists, else None (a fresh
    start). A given file that is missing or not .pth / .tlt, and a latest link whose target is
    gone, are one-line TaoUserErrors."""
    if given:
        if not str(given).endswith(CHECKPOINT_SUFFIXES):
            raise TaoUserError(f"{field}: {given} must be a .pth or .tlt checkpoint")
        require_file(given, field, "checkpoint file (.pth)")
        log.info("resuming training from %s (%s)", given, field)
        return str(given)
    latest = os.path.join(results_dir, latest_checkpoint_name(prefix) + ".pth")
    if os.path.lexists(latest):
        if not os.path.exists(latest):
            raise TaoUserError(
                f"{latest} points to {os.readlink(latest)}, which no longer exists; restore that file, set "
                f"{field}, or delete the link to start training from scratch"
            )
        log.info("resuming training from %s (latest checkpoint in the results folder)", latest)
        return latest
    return None
