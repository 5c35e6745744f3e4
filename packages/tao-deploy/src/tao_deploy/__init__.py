"""tao-deploy: build FP32 / FP16 / INT8 engines from exported ONNX and run them.

    from tao_deploy import build_engine, load_engine
    info = build_engine("model.onnx", "model.engine", precision="fp16")
    outputs = load_engine("model.engine").run({"input": batch})

No torch, no tensorflow: ONNX Runtime everywhere, TensorRT (optional extra) on NVIDIA GPUs.
"""

__version__ = "0.1.0"

from tao_deploy.engine.builder import EngineInfo, build_engine, build_from_spec, prepare_onnx  # noqa: E402
from tao_deploy.engine.calibration import Calibration, ImageBatches, list_calibration_images  # noqa: E402
from tao_deploy.engine.profile import ShapeRange  # noqa: E402
from tao_deploy.runtime import Engine, load_engine  # noqa: E402

__all__ = [
    "Calibration",
    "Engine",
    "EngineInfo",
    "ImageBatches",
    "ShapeRange",
    "build_engine",
    "build_from_spec",
    "list_calibration_images",
    "load_engine",
    "prepare_onnx",
]
