"""What the evaluate, inference and export tasks of the DETR-family networks share on the PyTorch
side: the checks that run before any compute and the model loaded from a checkpoint.

The framework-free rules the deploy engine tasks share live in tao-core: task sections in
tao_core.tasks.detr, class names in tao_core.data.classmap."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from tao_core.errors import SpecError, TaoUserError
from tao_pytorch.common.checkpoint import load_checkpoint, load_model_weights
from tao_pytorch.detr.network import DetrNetwork

logger = logging.getLogger(__name__)


def refuse_trt_engine(section, network: DetrNetwork, task: str) -> None:
    """`<task>.trt_engine` belongs to tao deploy; say so before anything is loaded."""
    engine = getattr(section, "trt_engine", None)
    if engine:
        raise TaoUserError(
            f"{task}.trt_engine={engine}: TensorRT engines are run by tao-deploy "
            f"(`tao deploy {network.name} {task} -e SPEC {task}.trt_engine=...`); this PyTorch task "
            f"runs {task}.checkpoint: remove {task}.trt_engine and set {task}.checkpoint=/path/model.pth"
        )


def read_model_checkpoint(path: Any, key: str | None, task: str):
    """Load (and decrypt) the checkpoint file first, so a missing file, a missing or wrong key
    fails before the model is built."""
    if not path:
        raise SpecError(f"{task}.checkpoint", None, f"the trained model to use ({task}.checkpoint=/path/model.pth)")
    return load_checkpoint(str(path), key, field=f"{task}.checkpoint")  # missing / a folder / unreadable: one line


def device_for(section, on_cpu: bool = False) -> torch.device:
    """The first of `<task>.gpu_ids` (or export.gpu_id) when CUDA is there, else the CPU."""
    if on_cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    gpu = getattr(section, "gpu_id", None)
    if gpu is None:
        ids = list(getattr(section, "gpu_ids", None) or [0])
        gpu = ids[0]
    return torch.device(f"cuda:{int(gpu)}")


def load_task_model(network: DetrNetwork, cfg, checkpoint, path: str, task: str, device: torch.device) -> nn.Module:
    """Build the network of the spec and load `checkpoint` (what read_model_checkpoint read from
    `path`) into it; eval mode, on `device`. A checkpoint that does not fill the model is an error."""
    model = network.build_model(cfg)
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
