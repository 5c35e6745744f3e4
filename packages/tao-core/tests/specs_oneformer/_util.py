"""Helpers for the OneFormer spec tests."""

from pathlib import Path

import pytest

from tao_core.errors import SpecErrors
from tao_core.specs.oneformer import SPEC

DATA = Path(__file__).parent / "data"

# Inputs that a task needs outside the section a seed fragment prints (the fragments show one
# section only; these complete them without changing the fragment file).
TRAIN_DATA = [
    "dataset.train.images=/data/coco/train2017",
    "dataset.train.annotations=/data/coco/annotations/panoptic_train2017.json",
    "dataset.train.panoptic=/data/coco/panoptic_train2017",
    "dataset.val.images=/data/coco/val2017",
    "dataset.val.annotations=/data/coco/annotations/panoptic_val2017.json",
    "dataset.val.panoptic=/data/coco/panoptic_val2017",
]
TEST_DATA = [
    "dataset.test.images=/data/coco/val2017",
    "dataset.test.annotations=/data/coco/annotations/panoptic_val2017.json",
    "dataset.test.panoptic=/data/coco/panoptic_val2017",
]
CKPT = "/ckpt/model.pth"
# What each task needs at least, so a bad-spec test changes exactly one thing.
MINIMAL = {
    "train": TRAIN_DATA,
    "evaluate": TEST_DATA + [f"evaluate.checkpoint={CKPT}"],
    "inference": [f"inference.checkpoint={CKPT}", "inference.images_dir=/data/images"],
    "export": [f"export.checkpoint={CKPT}", "export.onnx_file=/out/model.onnx"],
    "gen_trt_engine": ["gen_trt_engine.onnx_file=/out/model.onnx", "gen_trt_engine.trt_engine=/out/model.engine"],
}


def load(task, *overrides, path=None, text=None):
    return SPEC.load(task, path=path, overrides=[*MINIMAL[task], *overrides], text=text)


def errors_of(task, *overrides, text=None):
    """The SpecErrors raised for a minimal valid spec of `task` plus `overrides`."""
    with pytest.raises(SpecErrors) as info:
        load(task, *overrides, text=text)
    return info.value.errors


def paths_of(task, *overrides, text=None):
    return [e.path for e in errors_of(task, *overrides, text=text)]
