"""Two training processes (Lightning DDP over gloo on CPU), then the checkpoint evaluated alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import build_model
from train_helpers import NUM_TRAIN, load_cfg, status_lines, write_spec

from tao_core.processing.detr import to_coco_results
from tao_pytorch.common.checkpoint import load_checkpoint, load_model_weights
from tao_pytorch.detr.data import build_dataloader
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.lightning_module import coco_map
from tao_pytorch.detr.postprocess import build_postprocess
from tao_pytorch.detr.trainer import val_ground_truth

HERE = Path(__file__).resolve().parent


def evaluate_checkpoint(cfg, path) -> dict:
    """mAP of a checkpoint on the val split in this (single) process."""
    model = build_model("dino", cfg)
    load_model_weights(model, str(path))
    model.eval()
    loader = build_dataloader(cfg.dataset, "val")
    post = build_postprocess(cfg)
    dets = []
    with torch.no_grad():
        for images, mask, targets in loader:
            decoded = post(model(with_mask_channel(images, mask)), torch.stack([t["orig_size"] for t in targets]))
            for det, t in zip(decoded, targets, strict=True):
                dets += to_coco_results([det], [int(t["image_id"][0])])
    return coco_map(val_ground_truth(loader.dataset), dets)


@pytest.mark.ddp
@pytest.mark.parametrize("strategy", ["ddp", "ddp_sharded"])
def test_two_process_training_then_evaluate(tmp_path, sources, strategy):
    spec = write_spec(tmp_path / "spec.yaml", "dino", sources, tmp_path / "results", batch_size=1,
                      train={"distributed_strategy": strategy})
    proc = subprocess.run([sys.executable, str(HERE / "ddp_train.py"), str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "Starting with 2 processes" in proc.stdout + proc.stderr

    task_dir = tmp_path / "results" / "train"
    steps = NUM_TRAIN // 2  # each rank trains on half of the images, batch 1
    latest = task_dir / "dino_model_latest.pth"
    ckpt = load_checkpoint(latest)
    assert ckpt["global_step"] == steps and (task_dir / f"model_epoch_000_step_{steps:05d}.pth").is_file()
    if strategy == "ddp_sharded":  # ZeRO state gathered from both ranks into one optimizer state
        trainable = sum(len(g["params"]) for g in ckpt["optimizer_states"][0]["param_groups"])
        assert len(ckpt["optimizer_states"][0]["state"]) == trainable

    running = [r for r in status_lines(task_dir) if r["status"] == "RUNNING"]
    assert len(running) == 1  # rank 0 only
    # the mAP of the run (detections of both ranks gathered) = the checkpoint evaluated alone
    metrics = evaluate_checkpoint(load_cfg("dino", spec), latest)
    assert running[0]["kpi"]["val_mAP"] == pytest.approx(metrics["val_mAP"], abs=1e-6)
    assert running[0]["kpi"]["val_mAP50"] == pytest.approx(metrics["val_mAP50"], abs=1e-6)
