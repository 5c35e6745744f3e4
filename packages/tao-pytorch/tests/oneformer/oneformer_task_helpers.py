"""Tiny OneFormer task specs on the shipped COCO panoptic sample (2 images, 133 classes).

A plain module with a name no other tests folder uses, imported by the task test files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tao_core.results import StatusLogger
from tao_core.testing import find_dataset

REPO = Path(__file__).resolve().parents[4]
COCO = find_dataset("coco_panoptic_sample", REPO, marker="annotations/panoptic_val2017_sample.json")

# The smallest model that runs every code path (Swin stages, deformable pixel decoder, 2 decoder
# layers with deep supervision, text branch), with few mask points so a CPU step takes a second.
TINY_MODEL = {
    "mode": "panoptic",
    "backbone": {"swin": {"embed_dim": 32, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 4,
                          "drop_path_rate": 0.0}},
    "sem_seg_head": {"num_classes": 133, "convs_dim": 64, "mask_dim": 64, "transformer_enc_layers": 1},
    "one_former": {"hidden_dim": 64, "nheads": 4, "dim_feedforward": 64, "dec_layers": 2, "num_object_queries": 40,
                   "class_dec_layers": 1, "train_num_points": 256},
    "text_encoder": {"width": 64, "num_layers": 1, "n_ctx": 2, "context_length": 16},
}
TINY_AUG = {"train_min_size": [64], "train_max_size": 96, "train_crop_size": [64, 64], "test_min_size": 64,
            "test_max_size": 96}


def sample_split(root: Path | None = None) -> dict:
    """dataset.<split> of the COCO panoptic sample (or of its copy under `root`)."""
    base = root or COCO
    return {"images": str(base / "val2017"), "annotations": str(base / "annotations/panoptic_val2017_sample.json"),
            "panoptic": str(base / "panoptic_val2017"), "batch_size": 2, "num_workers": 0}


def copy_sample(dest: Path) -> Path:
    """A private copy of the sample (tests that damage data work on it)."""
    shutil.copytree(COCO, dest)
    return dest


def write_spec(path: Path, results_dir: Path, split: dict | None = None, *, aug: dict | None = None,
               train: dict | None = None, model: dict | None = None, **sections) -> Path:
    """A complete OneFormer spec (JSON is YAML) with the tiny model; every split is `split`."""
    split = split or sample_split()
    spec = {
        "results_dir": str(results_dir),
        "dataset": {"train": split, "val": split, "test": split, "augmentation": {**TINY_AUG, **(aug or {})},
                    "task_seq_len": 16, "max_seq_len": 16, "workers": 0},
        "model": {**TINY_MODEL, **(model or {})},
        "train": {"num_epochs": 1, "seed": 7, "activation_checkpoint": False, **(train or {})},
        **sections,
    }
    path.write_text(json.dumps(spec, indent=1))
    return path


def status_lines(results_dir: Path, task: str) -> list[dict]:
    return StatusLogger(results_dir, task, enabled=False).read()
