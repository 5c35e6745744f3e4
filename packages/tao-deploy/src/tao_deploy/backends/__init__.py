"""Backends turn a prepared ONNX (precision already applied) into a payload, and run payloads.

A backend module provides::

    NAME: str
    unavailable_reason() -> str | None   None when usable here
    version() -> str
    check(precision, options) -> None    TaoUserError for what it cannot honour
    build(model, profile, options) -> bytes
    load(payload, metadata) -> runner with .run(feed) -> dict and .close()

`auto` picks TensorRT when it imports and a GPU is visible, else ONNX Runtime, and logs why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType

from tao_core.errors import TaoUserError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class BuildOptions:
    workspace_mib: float = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    strict_types: bool = False
    verbose: bool = False


def get_backend(name: str) -> ModuleType:
    if name == "onnxruntime":
        from tao_deploy.backends import onnxruntime_backend

        return onnxruntime_backend
    if name == "tensorrt":
        from tao_deploy.backends import tensorrt_backend

        return tensorrt_backend
    raise TaoUserError(f"backend {name!r} is not one of {list(BACKENDS)}")


def choose_backend(name: str = "auto") -> ModuleType:
    """The backend to build with; an explicitly requested one that is unusable is an error."""
    if name not in BACKENDS:
        raise TaoUserError(f"backend {name!r} is not one of {list(BACKENDS)}")
    if name != "auto":
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            raise TaoUserError(f"backend {name!r} cannot be used here: {reason}")
        log.info("engine backend: %s %s (requested)", backend.NAME, backend.version())
        return backend
    trt = get_backend("tensorrt")
    reason = trt.unavailable_reason()
    if reason is None:
        log.info("engine backend: tensorrt %s (auto: TensorRT and an NVIDIA GPU are available)", trt.version())
        return trt
    ort = get_backend("onnxruntime")
    log.info("engine backend: onnxruntime %s (auto: %s)", ort.version(), reason)
    return ort
