"""Shared helpers of the DINO / Deformable DETR spec tests."""

from pathlib import Path
from textwrap import indent

import pytest

from tao_core.errors import SpecErrors
from tao_core.specs import deformable_detr, dino

DATA = Path(__file__).parent / "data"
SPECS = {"dino": dino.SPEC, "deformable_detr": deformable_detr.SPEC}

# Minimal overrides that satisfy each task's requirements, for specs that only set a section.
TRAIN_DATA = [
    "dataset.train_data_sources=[{image_dir: /d/train, json_file: /d/train.json}]",
    "dataset.val_data_sources=[{image_dir: /d/val, json_file: /d/val.json}]",
]
TEST_DATA = ["dataset.test_data_sources={image_dir: /d/val, json_file: /d/val.json}"]
INFER_DATA = ["dataset.infer_data_sources={image_dir: [/d/img], classmap: /d/classmap.txt}"]
NEEDS = {
    "train": TRAIN_DATA,
    "evaluate": TEST_DATA + ["evaluate.checkpoint=/m.pth"],
    "inference": INFER_DATA + ["inference.checkpoint=/m.pth"],
    "export": ["export.checkpoint=/m.pth"],
    "gen_trt_engine": ["gen_trt_engine.onnx_file=/m.onnx"],
    "convert": ["input_source=/s.txt", "results_dir=/r", "image_dir_name=images", "label_dir_name=labels"],
}


def example_text(name: str, mount: str = "") -> str:
    """A stored example; a fragment (e.g. `optim:`) is mounted under its parent section(s)."""
    text = (DATA / name).read_text()
    for section in reversed([s for s in mount.split(".") if s]):
        text = f"{section}:\n" + indent(text, "  ")
    return text


def load_ok(network: str, task: str, text: str = "", overrides=(), with_needs: bool = True):
    extra = list(NEEDS[task]) if with_needs else []
    return SPECS[network].load(task, text=text, overrides=extra + list(overrides))


def spec_errors(network: str, task: str, overrides=(), text: str = "", with_needs: bool = True) -> list:
    """The SpecErrors a spec raises, as a list of SpecError (fails if it loads)."""
    with pytest.raises(SpecErrors) as info:
        load_ok(network, task, text, overrides, with_needs)
    return info.value.errors


def paths(errors) -> list:
    return [e.path for e in errors]
