"""What the evaluate, inference and export tasks of DINO and Deformable DETR share: the checks
that run before any compute, the model loaded from a checkpoint, class names, batch size."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from tao_core.errors import SpecError, TaoUserError
from tao_pytorch.common.checkpoint import load_checkpoint, load_model_weights
from tao_pytorch.detr.build import build_model

logger = logging.getLogger(__name__)


def task_section(cfg, task: str):
    return cfg.get(task) if hasattr(cfg, "get") else getattr(cfg, task)


def output_dir(section, ctx) -> str:
    """`<task>.results_dir` when the spec sets it, else <results_dir>/<task> (ctx.results_dir)."""
    out = section.get("results_dir") if hasattr(section, "get") else getattr(section, "results_dir", None)
    out = str(out or ctx.results_dir)
    os.makedirs(out, exist_ok=True)
    return out


def refuse_trt_engine(section, network: str, task: str) -> None:
    """`<task>.trt_engine` belongs to tao deploy; say so before anything is loaded."""
    engine = getattr(section, "trt_engine", None)
    if engine:
        raise TaoUserError(
            f"{task}.trt_engine={engine}: TensorRT engines are run by tao-deploy "
            f"(`tao deploy {network} {task} -e SPEC {task}.trt_engine=...`); this PyTorch task "
            f"runs {task}.checkpoint: remove {task}.trt_engine and set {task}.checkpoint=/path/model.pth"
        )


def read_model_checkpoint(path: Any, key: str | None, task: str):
    """Load (and decrypt) the checkpoint file first, so a missing file, a missing or wrong key
    fails before the model is built."""
    if not path:
        raise SpecError(f"{task}.checkpoint", None, f"the trained model to use ({task}.checkpoint=/path/model.pth)")
    path = str(path)
    if not os.path.isfile(path):
        raise TaoUserError(f"{task}.checkpoint: {path} does not exist")
    return load_checkpoint(path, key)


def device_for(section, on_cpu: bool = False) -> torch.device:
    """The first of `<task>.gpu_ids` (or export.gpu_id) when CUDA is there, else the CPU."""
    if on_cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    gpu = getattr(section, "gpu_id", None)
    if gpu is None:
        ids = list(getattr(section, "gpu_ids", None) or [0])
        gpu = ids[0]
    return torch.device(f"cuda:{int(gpu)}")


def load_task_model(network: str, cfg, checkpoint, path: str, task: str, device: torch.device) -> nn.Module:
    """Build the network of the spec and load `checkpoint` (what read_model_checkpoint read from
    `path`) into it; eval mode, on `device`. A checkpoint that does not fill the model is an error."""
    model = build_model(network, cfg)
    report = load_model_weights(model, checkpoint)
    if report.missing or report.skipped_shape:
        # An evaluation with half-initialised weights is a wrong number, not a warning.
        raise TaoUserError(
            f"{task}.checkpoint {path} does not fit the model of this spec: "
            f"{len(report.missing)} model tensors missing from it, {len(report.skipped_shape)} of another shape "
            f"(e.g. {(report.skipped_shape or report.missing)[:3]}); check model.* and dataset.num_classes"
        )
    logger.info("loaded %d tensors from %s", len(report.loaded), path)
    return model.to(device).eval()


def batch_size_of(section, cfg) -> int:
    """`<task>.batch_size`, or dataset.batch_size when it is -1."""
    bs = int(getattr(section, "batch_size", -1) or -1)
    return bs if bs > 0 else int(cfg.dataset.batch_size)


def input_size_of(section, task: str) -> tuple[int, int] | None:
    """(h, w) from `<task>.input_height/input_width`, or None (aspect-preserving resize)."""
    h, w = getattr(section, "input_height", None), getattr(section, "input_width", None)
    if (h is None) != (w is None):
        missing = "input_width" if w is None else "input_height"
        raise SpecError(f"{task}.{missing}", None, "a value: input_height and input_width are given together")
    return None if h is None else (int(h), int(w))


def read_classmap(path: str | os.PathLike) -> list[str]:
    """Class names of a classmap file: one per line, line i (0-based) = category id i + 1."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f]
    except FileNotFoundError:
        raise TaoUserError(f"dataset.infer_data_sources.classmap: {path} does not exist") from None
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise TaoUserError(f"dataset.infer_data_sources.classmap: {path} must list one class name per line, no blanks")
    return names


def names_by_id(cfg) -> dict[int, str]:
    """Category id -> name from the spec's data: the first COCO json of train/val/test sources,
    else the inference classmap. Empty when there is none."""
    from tao_core.data.coco import read_json

    ds = cfg.dataset
    sources = []
    for field in ("test_data_sources", "val_data_sources", "train_data_sources"):
        value = ds.get(field) if hasattr(ds, "get") else getattr(ds, field, None)
        if value is None:
            continue
        sources += [value] if hasattr(value, "get") and "json_file" in value else list(value)
    for src in sources:
        json_file = src.get("json_file") if hasattr(src, "get") else getattr(src, "json_file", None)
        if json_file and os.path.isfile(str(json_file)):
            cats = read_json(str(json_file)).get("categories", [])
            return {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    infer = ds.get("infer_data_sources") if hasattr(ds, "get") else getattr(ds, "infer_data_sources", None)
    classmap = infer.get("classmap") if infer is not None else None
    if classmap and os.path.isfile(str(classmap)):
        return {i + 1: n for i, n in enumerate(read_classmap(classmap))}
    return {}


def label_names(cfg) -> list[str]:
    """One name per model output class (index = category id), as in TAO's labels.txt:
    'background' at 0 when ids start at 1, 'unknown' where the data names no class."""
    num_classes = int(cfg.dataset.num_classes)
    names = names_by_id(cfg)
    out = []
    for i in range(num_classes):
        if i in names:
            out.append(names[i])
        elif i == 0 and (not names or min(names) > 0):
            out.append("background")
        else:
            out.append("unknown")
    return out
