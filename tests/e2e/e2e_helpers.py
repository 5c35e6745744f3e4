"""Helpers of the end-to-end tests (a plain module; conftest and the tests import it)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from tao_core.specs import get_spec
from tao_pytorch.common.checkpoint import save_checkpoint
from tao_pytorch.detr.network import detr_network

NUM_VAL = 6  # raccoon val images evaluated
NUM_CAL = 8  # raccoon train images for INT8 calibration
INPUT_HW = (128, 160)  # export size = the exact evaluation size of both PyTorch and the engines

# Small enough for 2 CPU cores, big enough to run every code path (2 levels, 1 enc / 2 dec layers).
TINY_MODEL = {
    "backbone": "resnet_18",
    "hidden_dim": 32,
    "nheads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 64,
    "num_queries": 30,
    "num_select": 30,
    "num_feature_levels": 2,
    "return_interm_indices": [1, 2],
}


def make_subset(raccoon: Path, out: Path) -> dict:
    """NUM_VAL raccoon val images with their COCO json, NUM_CAL calibration images, a classmap."""
    full = json.loads((raccoon / "annotations" / "instances_val.json").read_text())
    images = full["images"][:NUM_VAL]
    ids = {im["id"] for im in images}
    subset = {"images": images, "annotations": [a for a in full["annotations"] if a["image_id"] in ids],
              "categories": full["categories"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "val.json").write_text(json.dumps(subset))
    cal = out / "cal"
    cal.mkdir()
    for p in sorted((raccoon / "train" / "images").iterdir())[:NUM_CAL]:
        shutil.copy(p, cal / p.name)
    infer = out / "infer"
    infer.mkdir()
    for im in images[:3]:
        shutil.copy(raccoon / "val" / "images" / im["file_name"], infer / im["file_name"])
    (out / "classmap.txt").write_text("raccoon\n")
    return {"image_dir": str(raccoon / "val" / "images"), "json_file": str(out / "val.json"),
            "cal_dir": str(cal), "infer_dir": str(infer), "classmap": str(out / "classmap.txt"), "root": out}


def write_spec(path: Path, data: dict, results_dir: Path, json_file: str | None = None, **sections) -> Path:
    """One spec for every task of both packages; `sections` add / replace fields of a section."""
    spec = {
        "results_dir": str(results_dir),
        "model": dict(TINY_MODEL),
        "dataset": {
            "num_classes": 2,
            "batch_size": 2,
            "workers": 0,
            "val_data_sources": [{"image_dir": data["image_dir"], "json_file": json_file or data["json_file"]}],
            "infer_data_sources": {"image_dir": data["infer_dir"], "classmap": data["classmap"]},
            "augmentation": {"test_random_resize": INPUT_HW[0], "random_resize_max_size": 256, "scales": [128]},
        },
        # PyTorch evaluate / inference at the exact export size: what the engine sees.
        "evaluate": {"input_height": INPUT_HW[0], "input_width": INPUT_HW[1]},
        "inference": {"input_height": INPUT_HW[0], "input_width": INPUT_HW[1], "conf_threshold": 0.0},
        "export": {"input_height": INPUT_HW[0], "input_width": INPUT_HW[1], "on_cpu": True},
        "gen_trt_engine": {"input_height": INPUT_HW[0], "input_width": INPUT_HW[1], "backend": "auto",
                           "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 4}},
    }
    for name, value in sections.items():
        spec[name] = {**spec.get(name, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(spec))
    return path


def clis(network: str):
    """(tao-pytorch CLI, tao-deploy CLI) of a network."""
    if network == "dino":
        from tao_deploy.dino.cli import CLI as DEPLOY
        from tao_pytorch.dino.cli import CLI as MODEL
    else:
        from tao_deploy.deformable_detr.cli import CLI as DEPLOY
        from tao_pytorch.deformable_detr.cli import CLI as MODEL
    return MODEL, DEPLOY


@dataclass
class Pipeline:
    network: str
    root: Path
    data: dict
    checkpoint: Path
    onnx_file: Path
    fp32_engine: Path

    @classmethod
    def create(cls, network: str, root: Path, data: dict, seed: int = 0) -> Pipeline:
        root.mkdir(parents=True, exist_ok=True)
        model_cli, deploy_cli = clis(network)
        ckpt = root / "model.pth"
        spec = write_spec(root / "base.yaml", data, root / "results")
        cfg = get_spec(network).load("evaluate", str(spec), [f"evaluate.checkpoint={ckpt}"])
        torch.manual_seed(seed)
        model = detr_network(network).build_model(cfg)
        save_checkpoint({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
        onnx_file = root / "model.onnx"
        assert model_cli.run("export", ["-e", str(spec), f"export.checkpoint={ckpt}",
                                        f"export.onnx_file={onnx_file}"]) == 0
        engine = root / "fp32.engine"
        assert deploy_cli.run("gen_trt_engine", ["-e", str(spec), f"gen_trt_engine.onnx_file={onnx_file}",
                                                 f"gen_trt_engine.trt_engine={engine}"]) == 0
        return cls(network, root, data, ckpt, onnx_file, engine)

    @property
    def clis(self):
        return clis(self.network)

    def spec(self, name: str, json_file: str | None = None, **sections) -> Path:
        return write_spec(self.root / f"{name}.yaml", self.data, self.root / name, json_file, **sections)

    def build(self, name: str, precision: str, **trt) -> Path:
        engine = self.root / f"{name}.engine"
        spec = self.spec(f"build_{name}", gen_trt_engine={
            "onnx_file": str(self.onnx_file), "trt_engine": str(engine),
            "tensorrt": {"data_type": precision, "min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 4,
                         **trt}})
        assert self.clis[1].run("gen_trt_engine", ["-e", str(spec)]) == 0
        return engine

    def evaluate_pytorch(self, name: str, json_file: str | None = None) -> dict:
        spec = self.spec(name, json_file, evaluate={"checkpoint": str(self.checkpoint)})
        assert self.clis[0].run("evaluate", ["-e", str(spec)]) == 0
        return json.loads((self.root / name / "evaluate" / "results.json").read_text())

    def evaluate_engine(self, name: str, engine: Path, json_file: str | None = None) -> dict:
        spec = self.spec(name, json_file, evaluate={"trt_engine": str(engine)})
        assert self.clis[1].run("evaluate", ["-e", str(spec)]) == 0
        return json.loads((self.root / name / "evaluate" / "results.json").read_text())

    def detections(self, name: str) -> list[dict]:
        return json.loads((self.root / name / "evaluate" / "detections.json").read_text())


def pseudo_ground_truth(detections: list[dict], gt_file: str, out: Path, per_image: int = 3) -> str:
    """A COCO json of the same images whose boxes are the `per_image` best detections of a model.

    A randomly initialised model scores ~0 mAP on the real raccoon boxes, so comparing two mAPs
    there says little; against its own top detections the reference model scores high, and any
    difference between two runs of the same model (PyTorch vs engine, FP32 vs INT8) shows.
    """
    gt = json.loads(Path(gt_file).read_text())
    known = {c["id"] for c in gt["categories"]}
    by_image: dict[int, list[dict]] = {}
    for d in sorted((d for d in detections if d["category_id"] in known), key=lambda d: -d["score"]):
        by_image.setdefault(d["image_id"], []).append(d)
    # The evaluate tasks renumber image ids 1..n in the json's order.
    anns = []
    for new_id, im in enumerate(gt["images"], start=1):
        for d in by_image.get(new_id, [])[:per_image]:
            x, y, w, h = d["bbox"]
            if w > 1 and h > 1:
                anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": d["category_id"],
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    out.write_text(json.dumps({"images": gt["images"], "annotations": anns, "categories": gt["categories"]}))
    return str(out)


def max_rel_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref|: the error relative to the output's scale."""
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
