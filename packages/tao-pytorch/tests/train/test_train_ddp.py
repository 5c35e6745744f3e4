"""Two training processes (Lightning DDP over gloo on CPU), then the checkpoint evaluated alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import build_model
from train_helpers import NUM_TRAIN, _generated, load_cfg, status_lines, write_spec

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


@pytest.mark.ddp
def test_an_error_on_one_rank_keeps_the_trained_steps(tmp_path):
    """Rank 1's validation image breaks after the training epoch: rank 1 fails while rank 0 waits
    for it in a collective, and no epoch checkpoint exists yet (checkpoint_interval 2). The failing
    rank writes the resumable checkpoint alone, so the 3 trained steps survive."""
    own = {"train": _generated(tmp_path / "data", "train", NUM_TRAIN, 0),
           "val": _generated(tmp_path / "data", "val", 4, 1)}
    spec = write_spec(tmp_path / "spec.yaml", "dino", own, tmp_path / "results", batch_size=1,
                      train={"checkpoint_interval": 2})
    victim = Path(own["val"]["image_dir"]) / "img1.jpg"  # index 1: rank 1's share (DistributedSampler, in order)
    proc = subprocess.run([sys.executable, str(HERE / "break_val_image.py"), str(spec), str(victim),
                           "train.num_gpus=2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Starting with 2 processes" in out
    steps = NUM_TRAIN // 2
    task_dir = tmp_path / "results" / "train"
    written = task_dir / f"model_epoch_000_step_{steps:05d}.pth"
    assert f"resumable checkpoint written: {written}" in out, out[-3000:]
    # rank 1 names the bad file; rank 0, cut off in a collective, says so in one line: no traceback
    assert f"error: {victim}: not a readable image (unknown or corrupt format)" in proc.stderr
    assert "error: training process 0 of 2 stopped because another one failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    latest = load_checkpoint(task_dir / "dino_model_latest.pth")
    assert latest["global_step"] == steps
    # resumable: what Lightning needs to go on (optimizer moments, loop progress), not weights alone
    assert latest["optimizer_states"][0]["state"] and latest["loops"]["fit_loop"]
