"""ONNX Runtime backend: always available; CPU, or CUDA where onnxruntime-gpu is installed.

Building = validating: the prepared ONNX must load into an InferenceSession here, so a model
that cannot run fails at build time, not at the first inference. The payload is that ONNX.

Version policy: an ONNX model carries its opset, and onnxruntime reads every older opset, so an
engine built with an older onnxruntime loads in a newer one. A newer engine in an older
onnxruntime is tried as well (it works whenever the opsets used are known to it); if the
session cannot be created the error names both versions.
"""

from __future__ import annotations

import logging
import platform

import numpy as np
import onnx
import onnxruntime as ort

from tao_core.errors import TaoUserError
from tao_deploy.backends import BuildOptions

log = logging.getLogger(__name__)

NAME = "onnxruntime"


def unavailable_reason() -> str | None:
    return None


def version() -> str:
    return ort.__version__


def device() -> str:
    gpu = "CUDAExecutionProvider" in _providers()
    return f"onnxruntime {'CUDA' if gpu else 'CPU'} on {platform.machine()}"


def check(precision: str, options: BuildOptions) -> None:
    if options.dla_core is not None:
        raise TaoUserError(
            f"DLA core {options.dla_core} requested, but DLA is a TensorRT feature of Jetson / DRIVE devices "
            f"and this build uses onnxruntime on {platform.machine()}"
        )
    if options.strict_types:
        raise TaoUserError(
            "strict type constraints (-s) are a TensorRT builder flag; onnxruntime runs the graph with exactly "
            "the types the precision pass wrote, so there is nothing to make strict. Drop -s"
        )
    if options.timing_cache:
        log.info("onnxruntime has no timing cache; %s is not used", options.timing_cache)


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def build(model: onnx.ModelProto, profile, options: BuildOptions) -> bytes:
    payload = serialize(model)
    try:
        _session(payload)
    except Exception as e:  # onnxruntime raises its own exception types; all mean "cannot run"
        raise TaoUserError(f"onnxruntime cannot load the prepared model: {e}") from None
    return payload


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _session(payload: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only; its warnings are about graph fusions, not for users
    return ort.InferenceSession(payload, sess_options=opts, providers=_providers())


class OrtRunner:
    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def close(self) -> None:
        self.session = None


def load(payload: bytes, metadata: dict) -> OrtRunner:
    built = str(metadata.get("backend_version"))
    try:
        return OrtRunner(_session(payload))
    except Exception as e:
        raise TaoUserError(
            f"this engine was built with onnxruntime {built} and cannot be loaded by the installed "
            f"onnxruntime {version()}: {e}. Install onnxruntime>={built} or rebuild the engine here"
        ) from None
