"""End to end through the `train` command path: checkpoints, status.json, TensorBoard, encryption."""

from __future__ import annotations

import os

import pytest
import torch
from model_helpers import build_model
from train_helpers import run_cli, status_lines, write_spec

from tao_core.errors import TaoUserError
from tao_pytorch.common.checkpoint import load_checkpoint, load_model_weights

STEPS = 3  # 6 train images, batch 2


def _check_run(task_dir, network: str, key=None):
    files = sorted(p.name for p in task_dir.iterdir())
    epoch_file = f"model_epoch_000_step_{STEPS:05d}.pth"
    latest = {"dino": "dino_model_latest.pth", "deformable_detr": "dd_model_latest.pth"}[network]  # TAO's names
    assert epoch_file in files and latest in files, files
    assert os.path.realpath(task_dir / latest) == os.path.realpath(task_dir / epoch_file)
    assert not [f for f in files if f.endswith(".tmp")]

    records = status_lines(task_dir)
    assert [r["status"] for r in records] == ["STARTED", "RUNNING", "SUCCESS"]
    running = records[1]
    assert running["epoch"] == 1 and running["max_epoch"] == 1 and "eta" in running
    assert set(running["kpi"]) == {"train_loss", "val_loss", "val_mAP", "val_mAP50"}
    assert 0.0 <= running["kpi"]["val_mAP"] <= 1.0

    events = list((task_dir / "lightning_logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    ckpt = load_checkpoint(task_dir / latest, key)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == STEPS and ckpt["tao_model"] == network
    state = ckpt["state_dict"]
    assert state and all(k.startswith("model.") for k in state)
    assert not any(k.startswith("model.model.") for k in state)
    return ckpt


def test_dino_train_writes_tao_results(dino_run):
    ckpt = _check_run(dino_run / "train", "dino")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((dino_run / "train" / "lightning_logs").glob("version_*")))).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss_step", "train_loss_epoch", "lr", "val_loss", "val_mAP", "val_mAP50",
            "train_loss_ce", "train_loss_bbox", "train_loss_giou"} <= tags, tags
    assert any(k.startswith("model.label_enc") for k in ckpt["state_dict"])  # DINO's denoising embedding
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]


def test_deformable_detr_train_encrypted(tmp_path, sources):
    key = "nvidia_tlt"
    spec = write_spec(tmp_path / "spec.yaml", "deformable_detr", sources, tmp_path / "results")
    assert run_cli("deformable_detr", spec, "-k", key) == 0
    task_dir = tmp_path / "results" / "train"
    ckpt = _check_run(task_dir, "deformable_detr", key=key)
    assert any(k.startswith("model.query_embed") for k in ckpt["state_dict"])

    latest = task_dir / "dd_model_latest.pth"
    with pytest.raises(TaoUserError, match="encrypted"):
        load_checkpoint(latest)
    with pytest.raises(TaoUserError, match="(?i)key"):
        load_checkpoint(latest, "not_the_key")
    with pytest.raises(Exception):  # noqa: B017 - not a torch file at all without the key
        torch.load(latest, weights_only=True)
    # resuming needs the key too: a clear error, not a crash in the middle of Lightning
    with pytest.raises(TaoUserError, match="encrypted"):
        run_cli("deformable_detr", spec, "train.num_epochs=2")
    with pytest.raises(TaoUserError, match="(?i)key"):
        run_cli("deformable_detr", spec, "train.num_epochs=2", "-k", "not_the_key")
    # the weights serve other tasks with the key
    from tao_core.specs import get_spec

    cfg = get_spec("deformable_detr").load("train", spec)
    report = load_model_weights(build_model("deformable_detr", cfg), str(latest), key=key)
    assert not report.skipped_shape and not report.missing
