"""TensorRT backend (10.x and 11.x), imported lazily: `pip install 'tao-deploy[tensorrt]'`.

It builds a STRONGLY TYPED network from the prepared ONNX: precision is already in the graph
(Cast nodes for FP16, Q/DQ for INT8), which is the only form TensorRT 11 accepts and one
TensorRT 10 accepts too, so no precision builder flags and no calibrator are used here.
One optimization profile, a workspace limit, an optional timing cache (read and updated), and
the plugin library registered (init_libnvinfer_plugins) so that nodes such as DINO's
MultiscaleDeformableAttnPlugin_TRT parse. Inference goes through polygraphy's TrtRunner,
whose CUDA wrapper manages device buffers (no pycuda).

A serialized plan only loads in the TensorRT version that built it; `load` checks the version
recorded in the engine file first, and turns TensorRT's own failure (the "magic tag" error)
into a message naming both versions.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import onnx

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes
from tao_deploy.backends import BuildOptions

log = logging.getLogger(__name__)

NAME = "tensorrt"
INSTALL_HINT = "install it with: pip install 'tao-deploy[tensorrt]' (needs an NVIDIA driver)"


def _trt():
    try:
        import tensorrt
    except Exception as e:  # ImportError, or OSError from missing libnvinfer / libnvonnxparser
        raise TaoUserError(f"tensorrt cannot be imported ({e}); {INSTALL_HINT}") from None
    return tensorrt


def unavailable_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:
        return f"tensorrt cannot be imported ({e.__class__.__name__}: {e})"
    count = _gpu_count()
    if isinstance(count, str):
        return count
    return None if count > 0 else "no NVIDIA GPU is visible"


def _gpu_count() -> int | str:
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6 layout
    except ImportError:
        return "cuda-python is not installed (pip install 'tao-deploy[tensorrt]')"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as e:  # the driver library itself is missing
        return f"no NVIDIA driver ({e})"
    return int(count) if int(err) == 0 else f"no usable NVIDIA GPU (CUDA error {int(err)})"


def version() -> str:
    return _trt().__version__


def device() -> str:
    """Name of GPU 0, recorded in the engine metadata (plans are tied to the GPU model too)."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, props = cudart.cudaGetDeviceProperties(0)
        name = props.name
        return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00") if int(err) == 0 else "GPU"
    except Exception:  # informational only
        return "GPU"


def _major() -> int:
    return int(version().split(".")[0])


def check(precision: str, options: BuildOptions) -> None:
    if options.dla_core is not None and platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        raise TaoUserError(
            f"DLA core {options.dla_core} requested, but DLA exists only on Jetson / DRIVE (aarch64) devices; "
            f"this is {platform.machine()}. Drop -u"
        )
    if options.strict_types and _major() >= 11:
        raise TaoUserError(
            f"strict type constraints (-s) were removed in TensorRT 11 (installed: {version()}); the engine is "
            "built strongly typed from the ONNX, so each layer already runs in the precision the graph gives it. Drop -s"
        )
    # TensorRT 10 with -s: a strongly typed network already obeys every type in the graph,
    # which is what -s asks for; nothing more to set (precision flags are illegal there).


def build(model: onnx.ModelProto, profile, options: BuildOptions) -> bytes:
    trt = _trt()
    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TaoUserError(f"TensorRT {trt.__version__} cannot parse the ONNX model: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib * 2**20))
    opt_profile = builder.create_optimization_profile()
    for name, r in profile.items():
        opt_profile.set_shape(name, r.min, r.opt, r.max)
    config.add_optimization_profile(opt_profile)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    if cache_path is not None:
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TaoUserError(f"TensorRT {trt.__version__} failed to build the engine; see the TensorRT log above")
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


def check_plan_version(built: str, installed: str, source: str = "engine") -> None:
    """A TensorRT plan only loads in the TensorRT version that built it."""
    if built != installed:
        raise TaoUserError(
            f"{source} was built with TensorRT {built}, but TensorRT {installed} is installed; a TensorRT engine "
            f"only loads in the version that built it. Rebuild the engine here, or install tensorrt=={built}"
        )


class TrtEngineRunner:
    def __init__(self, engine):
        from polygraphy.backend.trt import TrtRunner

        self._runner = TrtRunner(engine)
        self._runner.activate()

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._runner.infer(feed)
        return {k: np.array(v, copy=True) for k, v in out.items()}  # polygraphy reuses its buffers

    def close(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
            self._runner = None


def load(payload: bytes, metadata: dict, source: str = "engine") -> TrtEngineRunner:
    trt = _trt()
    built = str(metadata.get("backend_version"))
    check_plan_version(built, trt.__version__, source)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    engine = trt.Runtime(logger).deserialize_cuda_engine(payload)
    if engine is None:  # e.g. "The engine plan file is not compatible with this version" / magic tag
        raise TaoUserError(
            f"TensorRT {trt.__version__} could not deserialize {source} (built with TensorRT {built} on "
            f"{metadata.get('device', 'an unknown GPU')}): plans are tied to the TensorRT version and GPU "
            "that built them; rebuild the engine on this machine"
        )
    return TrtEngineRunner(engine)
