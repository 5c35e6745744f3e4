"""Tiny DETR training specs on a few raccoon images (or generated ones when shared/data is absent).

A plain module (not conftest.py) so the DDP script run as a subprocess can import it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tao_core.cli.network import TaskContext, YamlNetworkCli
from tao_core.results import StatusLogger
from tao_core.specs import get_spec
from tao_core.testing import find_dataset

NUM_TRAIN, NUM_VAL = 6, 4

TINY_MODEL = {
    "backbone": "resnet_18",
    "train_backbone": False,  # small checkpoints and fast steps; the groups test builds its own model
    "hidden_dim": 32,
    "nheads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 64,
    "num_queries": 20,
    "num_select": 20,
}
TINY_AUG = {
    "scales": [96, 112, 128],
    "train_random_resize": [100, 120],
    "train_random_crop_min": 64,
    "train_random_crop_max": 100,
    "random_resize_max_size": 160,
    "test_random_resize": 96,
}


def find_raccoon() -> Path | None:
    return find_dataset("raccoon", Path(__file__).resolve().parents[4], "annotations/instances_train.json")


def _subset(src_json: Path, n: int, out: Path) -> None:
    data = json.loads(src_json.read_text())
    images = sorted(data["images"], key=lambda im: im["id"])[:n]
    ids = {im["id"] for im in images}
    anns = [a for a in data["annotations"] if a["image_id"] in ids]
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": data["categories"]}))


def _generated(root: Path, split: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        w, h = (160, 120) if i % 2 == 0 else (120, 160)
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.jpg")
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "width": w, "height": h})
        bw, bh = rng.uniform(30, w / 2), rng.uniform(30, h / 2)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, bw, bh], "area": bw * bh,
                     "iscrowd": 0})
    json_file = root / f"{split}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns,
                                     "categories": [{"id": 1, "name": "raccoon"}]}))
    return {"image_dir": str(folder), "json_file": str(json_file)}


def make_sources(root: Path) -> dict:
    """{"train": {image_dir, json_file}, "val": {...}}: NUM_TRAIN / NUM_VAL images."""
    root.mkdir(parents=True, exist_ok=True)
    raccoon = find_raccoon()
    if raccoon is None:
        return {"train": _generated(root, "train", NUM_TRAIN, 0), "val": _generated(root, "val", NUM_VAL, 1)}
    out = {}
    for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        json_file = root / f"{split}.json"
        _subset(raccoon / "annotations" / f"instances_{split}.json", n, json_file)
        out[split] = {"image_dir": str(raccoon / split / "images"), "json_file": str(json_file)}
    return out


def write_spec(path: Path, network: str, sources: dict, results_dir: Path, *, num_classes: int = 2,
               batch_size: int = 2, train: dict | None = None, model: dict | None = None) -> Path:
    """A complete train spec (JSON is YAML) for `network` with the tiny model and data."""
    model_section = dict(TINY_MODEL)
    if network == "dino":
        model_section["dn_number"] = 4
    model_section.update(model or {})
    train_section = {"num_epochs": 1, "activation_checkpoint": False, "seed": 7}
    train_section.update(train or {})
    spec = {
        "results_dir": str(results_dir),
        "dataset": {
            "train_data_sources": [sources["train"]],
            "val_data_sources": [sources["val"]],
            "num_classes": num_classes,
            "batch_size": batch_size,
            "workers": 0,
            "augmentation": dict(TINY_AUG),
        },
        "model": model_section,
        "train": train_section,
    }
    path.write_text(json.dumps(spec, indent=1))
    return path


def status_lines(task_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (task_dir / "status.json").read_text().splitlines() if line.strip()]


def run_cli(network: str, spec: Path, *args: str) -> int:
    cli = YamlNetworkCli(network, {"train": f"tao_pytorch.{network}.tasks.train:run"})
    return cli.run("train", ["-e", str(spec), *args])


def load_cfg(network: str, spec: Path, overrides=()):
    return get_spec(network).load("train", spec, list(overrides))


def make_ctx(network: str, results_dir: Path, key: str | None = None) -> TaskContext:
    return TaskContext(network, "train", str(results_dir / "train"), key, StatusLogger(results_dir, "train"))
