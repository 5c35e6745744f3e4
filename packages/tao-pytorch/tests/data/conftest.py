"""Data-pipeline fixtures: the real raccoon set when present, else a generated COCO set."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tao_core.testing import find_dataset

REPO = Path(__file__).resolve().parents[4]

# Small sizes keep the tests fast; the code paths are those of the 800/1333 defaults.
SMALL_AUG = {
    "scales": [96, 112, 128],
    "input_mean": [0.485, 0.456, 0.406],
    "input_std": [0.229, 0.224, 0.225],
    "horizontal_flip_prob": 0.5,
    "train_random_resize": [100, 120],
    "train_random_crop_min": 64,
    "train_random_crop_max": 100,
    "random_resize_max_size": 200,
    "test_random_resize": 128,
    "fixed_padding": True,
    "fixed_random_crop": None,
}


def _generated_coco(root: Path, name: str, n: int, seed: int) -> dict:
    """n images (landscape, portrait, one grayscale) with 1-3 boxes of category 1 each."""
    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        w, h = (int(rng.integers(150, 300)), int(rng.integers(100, 140)))
        if i % 3 == 1:
            w, h = h, w
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert("L") if i == 2 else Image.fromarray(arr)
        img.save(root / name / f"img{i}.jpg")
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0})
    json_file = root / f"{name}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns,
                                     "categories": [{"id": 1, "name": "raccoon"}]}))
    return {"image_dir": str(root / name), "json_file": str(json_file)}


@pytest.fixture(scope="session")
def coco_sources(tmp_path_factory):
    """{"train": [source], "val": [source]} of raccoon (real) or a generated stand-in."""
    raccoon = find_dataset("raccoon", REPO, "annotations/instances_train.json")
    if raccoon:
        return {split: [{"image_dir": str(raccoon / split / "images"),
                         "json_file": str(raccoon / "annotations" / f"instances_{split}.json")}]
                for split in ("train", "val")}
    root = tmp_path_factory.mktemp("coco")
    return {"train": [_generated_coco(root, "train", 12, 0)], "val": [_generated_coco(root, "val", 6, 1)]}


def make_dataset_cfg(coco_sources, **overrides):
    aug = dict(SMALL_AUG, **overrides.pop("augmentation", {}))
    cfg = {"train_data_sources": coco_sources["train"], "val_data_sources": coco_sources["val"],
           "test_data_sources": None, "infer_data_sources": None, "num_classes": 2, "batch_size": 4,
           "workers": 0, "train_sampler": "default_sampler", "dataset_type": "serialized", "pin_memory": True,
           "augmentation": SimpleNamespace(**aug)}
    cfg.update(overrides)
    return SimpleNamespace(**cfg)


@pytest.fixture
def make_cfg(coco_sources):
    """make_cfg(**overrides) -> a dataset section (augmentation=dict(...) overrides single fields)."""
    return lambda **overrides: make_dataset_cfg(coco_sources, **overrides)


@pytest.fixture
def small_aug():
    return dict(SMALL_AUG)
