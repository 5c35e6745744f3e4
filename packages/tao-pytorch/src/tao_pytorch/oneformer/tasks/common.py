"""What the OneFormer evaluate, inference and export tasks share on the PyTorch side: the model of
`<task>.checkpoint`, loaded after every check that needs no compute.

    from tao_pytorch.oneformer.tasks.common import load_oneformer_for_task
    model, path = load_oneformer_for_task(cfg, "evaluate")        # eval mode, on <task>'s device

The framework-free evaluation the deploy engine shares is tao_core.tasks.oneformer; the
network's conventions (input pixels, per-image outputs, task tokens) tao_pytorch.oneformer.network.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from tao_core.errors import TaoUserError
from tao_pytorch.detr.tasks.common import device_for, read_model_checkpoint, refuse_trt_engine
from tao_pytorch.oneformer.model.oneformer import load_oneformer_weights
from tao_pytorch.oneformer.network import NETWORK

logger = logging.getLogger(__name__)


def load_oneformer_for_task(cfg: Any, task: str, device: torch.device | str | None = None,
                            key: str | None = None) -> tuple[nn.Module, str]:
    """(model in eval mode on `device`, checkpoint path) of `cfg.<task>.checkpoint`.

    In this order, so mistakes cost nothing: `<task>.trt_engine` set is refused (engines are
    tao-deploy's); the checkpoint file is read and decrypted (key: `key`, else the spec's
    encryption_key, which `-k` sets): missing file, wrong key, not a checkpoint are one line each;
    then the model of the spec is built without its text branch (training-only; a checkpoint's
    text weights are simply not used) and must be filled completely: a tensor missing or of
    another shape (model.* or num_classes changed since training) is a TaoUserError, never an
    evaluation of half-initialised weights. device: default the first of <task>.gpu_ids when
    CUDA is there (export: export.gpu_id, or the CPU with export.on_cpu), else the CPU.
    """
    section = cfg[task]
    refuse_trt_engine(section, NETWORK, task)
    key = key if key is not None else cfg.get("encryption_key")
    path = section.checkpoint
    checkpoint = read_model_checkpoint(path, key, task)
    model = NETWORK.build_model(cfg, with_text=False)
    report = load_oneformer_weights(model, checkpoint)
    if report.missing or report.skipped_shape:
        raise TaoUserError(
            f"{task}.checkpoint {path} does not fit the model of this spec: {len(report.missing)} model tensors "
            f"missing from it, {len(report.skipped_shape)} of another shape (e.g. "
            f"{(report.skipped_shape or report.missing)[:3]}); check model.* and model.sem_seg_head.num_classes")
    logger.info("loaded %d tensors from %s", len(report.loaded), path)
    if device is None:
        device = device_for(section, on_cpu=bool(section.get("on_cpu", False)))
    return model.to(device).eval(), str(path)
