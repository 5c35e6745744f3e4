"""load_engine: open an engine file with the backend that built it and run it.

`Engine.run` checks what a TensorRT engine would reject (input names, dtypes, shapes outside
the optimization profile) on every backend, so an engine behaves the same everywhere.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tao_core.errors import TaoUserError
from tao_deploy.backends import get_backend
from tao_deploy.engine.engine_file import read_engine
from tao_deploy.engine.profile import ShapeRange, check_shape_in_profile

log = logging.getLogger(__name__)


class Engine:
    """A loaded engine: `.metadata` (the file's header), `.run(inputs) -> outputs`."""

    def __init__(self, metadata: dict, runner, source: str = "engine"):
        self.metadata = metadata
        self.source = source
        self._runner = runner
        self.inputs = {i["name"]: i for i in metadata["inputs"]}
        self.output_names = list(metadata["outputs"])
        self.profile = {k: ShapeRange.from_json(v) for k, v in metadata.get("profile", {}).items()}

    @property
    def backend(self) -> str:
        return self.metadata["backend"]

    @property
    def precision(self) -> str:
        return self.metadata["precision"]

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names", []))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._runner is None:
            raise TaoUserError(f"{self.source}: the engine was closed")
        missing = sorted(set(self.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(self.inputs))
        if missing or extra:
            raise TaoUserError(
                f"{self.source}: inputs must be exactly {sorted(self.inputs)}; missing {missing}, unexpected {extra}"
            )
        feed = {}
        for name, arr in inputs.items():
            want = np.dtype(self.inputs[name]["dtype"])
            arr = np.asarray(arr)
            if arr.dtype != want:
                if arr.dtype.kind != want.kind:
                    raise TaoUserError(f"{self.source}: input {name!r} must be {want}, got {arr.dtype}")
                arr = arr.astype(want)  # float64 -> float32 and the like: same kind, safe to convert
            if name in self.profile:
                check_shape_in_profile(name, arr.shape, self.profile[name])
            feed[name] = np.ascontiguousarray(arr)
        out = self._runner.run(feed)
        return {k: out[k] for k in self.output_names}

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_engine(path: str | os.PathLike) -> Engine:
    metadata, payload = read_engine(path)
    name = metadata.get("backend")
    if name not in ("onnxruntime", "tensorrt"):
        raise TaoUserError(f"{path}: unknown engine backend {name!r}")
    backend = get_backend(name)
    if name == "tensorrt":
        reason = backend.unavailable_reason()
        if reason:
            raise TaoUserError(
                f"{path} is a TensorRT {metadata.get('backend_version')} engine, but TensorRT cannot run here: "
                f"{reason}. Build an onnxruntime engine for this machine instead (backend=onnxruntime)"
            )
        runner = backend.load(payload, metadata, source=str(path))
    else:
        runner = backend.load(payload, metadata)
    log.info("loaded %s: %s %s engine", path, metadata.get("precision", "?").upper(), name)
    return Engine(metadata, runner, str(path))
