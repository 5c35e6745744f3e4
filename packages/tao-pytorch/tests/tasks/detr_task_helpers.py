"""Tiny specs, data and checkpoints for the task tests (DINO / Deformable DETR on a few raccoon
images, or generated images when shared/data is absent).

A plain module with a name no other tests folder uses, imported by the test files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from model_helpers import build_model
from PIL import Image

from tao_core.specs import get_spec
from tao_core.testing import find_dataset
from tao_pytorch.common.checkpoint import save_checkpoint

NETWORKS = ("dino", "deformable_detr")
NUM_IMAGES = 4

# The smallest model that runs every code path: 2 feature levels, 1 encoder / 2 decoder layers.
TINY_MODEL = {
    "backbone": "resnet_18",
    "hidden_dim": 32,
    "nheads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 64,
    "num_queries": 20,
    "num_select": 20,
    "num_feature_levels": 2,
    "return_interm_indices": [1, 2],
}
SMALL_AUG = {"test_random_resize": 96, "random_resize_max_size": 160, "scales": [96], "fixed_padding": True}
EXPORT_HW = (64, 96)


def raccoon_root() -> Path | None:
    return find_dataset("raccoon", Path(__file__).resolve().parents[4])


def _generate_kitti_set(root: Path, n: int) -> Path:
    """n random RGB images with 1-2 boxes of class raccoon, as images/ + labels/ (KITTI)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = int(rng.integers(120, 200)), int(rng.integers(90, 150))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"img{i}.jpg")
        lines = []
        for _ in range(int(rng.integers(1, 3))):
            x1, y1 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            x2, y2 = x1 + rng.uniform(10, w / 2), y1 + rng.uniform(10, h / 2)
            lines.append(f"raccoon 0.00 0 0.00 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00")
        (root / "labels" / f"img{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def kitti_folder(tmp: Path) -> Path:
    """A KITTI folder (images/, labels/): raccoon/val when present, else generated."""
    root = raccoon_root()
    return root / "val" if root else _generate_kitti_set(tmp / "kitti", NUM_IMAGES)


def make_data(tmp: Path) -> dict:
    """{image_dir, json_file, infer_dir, classmap}: NUM_IMAGES images with a COCO json (original
    ids kept, not 1..n, so the reader's renumbering is exercised) and an inference folder."""
    root = raccoon_root()
    tmp.mkdir(parents=True, exist_ok=True)
    if root:
        full = json.loads((root / "annotations" / "instances_val.json").read_text())
        image_dir = root / "val" / "images"
        images = full["images"][:NUM_IMAGES]
        categories = full["categories"]
        ids = {im["id"] for im in images}
        anns = [a for a in full["annotations"] if a["image_id"] in ids]
    else:
        image_dir = _generate_kitti_set(tmp / "gen", NUM_IMAGES) / "images"
        images, anns = [], []
        for i, path in enumerate(sorted(image_dir.iterdir())):
            w, h = Image.open(path).size
            images.append({"id": 100 + i, "file_name": path.name, "width": w, "height": h})
            for line in (image_dir.parent / "labels" / f"{path.stem}.txt").read_text().splitlines():
                x1, y1, x2, y2 = (float(v) for v in line.split()[4:8])
                anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        categories = [{"id": 1, "name": "raccoon"}]
    json_file = tmp / "subset.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    infer_dir = tmp / "infer"
    infer_dir.mkdir(exist_ok=True)
    for im in images[:3]:
        (infer_dir / im["file_name"]).write_bytes((image_dir / im["file_name"]).read_bytes())
    classmap = tmp / "classmap.txt"
    classmap.write_text("raccoon\n")
    return {"image_dir": str(image_dir), "json_file": str(json_file), "infer_dir": str(infer_dir),
            "classmap": str(classmap)}


def write_spec(path: Path, data: dict, results_dir: Path, checkpoint: str | None = None, **sections) -> Path:
    """A complete tiny experiment spec; `sections` adds or replaces top-level sections."""
    spec = {
        "results_dir": str(results_dir),
        "model": dict(TINY_MODEL),
        "dataset": {
            "num_classes": 2,
            "batch_size": 2,
            "workers": 0,
            "val_data_sources": [{"image_dir": data["image_dir"], "json_file": data["json_file"]}],
            "infer_data_sources": {"image_dir": data["infer_dir"], "classmap": data["classmap"]},
            "augmentation": dict(SMALL_AUG),
        },
        "evaluate": {"checkpoint": checkpoint},
        "inference": {"checkpoint": checkpoint},
        "export": {"checkpoint": checkpoint, "input_height": EXPORT_HW[0], "input_width": EXPORT_HW[1]},
    }
    for name, value in sections.items():
        spec[name] = {**spec.get(name, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(spec))
    return path


def make_checkpoint(network: str, spec_file: Path, out: Path, key: str | None = None, seed: int = 0) -> Path:
    """A Lightning-style checkpoint {"state_dict": {"model.<name>": ...}} of the spec's model."""
    cfg = get_spec(network).load("evaluate", str(spec_file), [])
    torch.manual_seed(seed)
    model = build_model(network, cfg)
    save_checkpoint({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, out, key=key)
    return out


def status_lines(results_dir: Path, task: str) -> list[dict]:
    path = results_dir / task / "status.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
