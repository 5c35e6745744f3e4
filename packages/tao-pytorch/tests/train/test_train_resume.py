"""Resume: automatically from <results_dir>/train/<net>_model_latest.pth after a kill that hit a
checkpoint write, or from train.resume_training_checkpoint_path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from train_helpers import run_cli, status_lines, write_spec

from tao_pytorch.common.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
STEPS = 3  # per epoch: 6 train images, batch 2


def _adam_steps(ckpt) -> set:
    return {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}


def test_kill_during_checkpoint_write_then_resume(tmp_path, sources):
    spec = write_spec(tmp_path / "spec.yaml", "dino", sources, tmp_path / "results", train={"num_epochs": 2})
    task_dir = tmp_path / "results" / "train"
    proc = subprocess.run([sys.executable, str(HERE / "kill_during_save.py"), str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]

    # the kill left a torn temporary file; the latest checkpoint is still epoch 0, whole and loadable
    assert [p.name for p in task_dir.glob(".model_epoch_001*.tmp")]
    assert not (task_dir / f"model_epoch_001_step_{2 * STEPS:05d}.pth").exists()
    latest = task_dir / "dino_model_latest.pth"
    assert os.path.basename(os.path.realpath(latest)) == f"model_epoch_000_step_{STEPS:05d}.pth"
    before = load_checkpoint(latest)
    assert before["epoch"] == 0 and before["global_step"] == STEPS and _adam_steps(before) == {STEPS}
    # epoch 2's status line comes before its checkpoint (Lightning saves after the module's epoch-end hook)
    assert [(r["status"], r.get("epoch")) for r in status_lines(task_dir)] == [
        ("STARTED", None), ("RUNNING", 1), ("RUNNING", 2)]

    # the same command again resumes at epoch 1 instead of restarting
    assert run_cli("dino", spec) == 0
    after = load_checkpoint(latest)
    assert os.path.basename(os.path.realpath(latest)) == f"model_epoch_001_step_{2 * STEPS:05d}.pth"
    assert after["epoch"] == 1 and after["global_step"] == 2 * STEPS
    assert _adam_steps(after) == {2 * STEPS}  # the optimizer state went on from the checkpoint
    assert [(r["status"], r.get("epoch")) for r in status_lines(task_dir)[3:]] == [
        ("STARTED", None), ("RUNNING", 2), ("SUCCESS", None)]
    assert "resuming training from" in (task_dir / "train.log").read_text()


def test_resume_from_given_checkpoint(dino_run_copy, tmp_path, sources):
    """train.resume_training_checkpoint_path wins over the results folder (here a fresh one)."""
    given = dino_run_copy / "train" / f"model_epoch_000_step_{STEPS:05d}.pth"
    spec = write_spec(tmp_path / "spec.yaml", "dino", sources, tmp_path / "fresh",
                      train={"num_epochs": 2, "resume_training_checkpoint_path": str(given)})
    assert run_cli("dino", spec) == 0
    ckpt = load_checkpoint(tmp_path / "fresh" / "train" / "dino_model_latest.pth")
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * STEPS
