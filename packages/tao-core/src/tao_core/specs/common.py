"""Spec sections shared by every YAML network (gen_trt_engine is read by tao-deploy).

Defaults follow TAO's common dataclasses; workspace size is in MiB as in TAO.
"""

from dataclasses import dataclass
from typing import List, Optional

from tao_core.spec.fields import spec_field

DATA_TYPES = ["FP32", "FP16", "INT8", "fp32", "fp16", "int8"]
CALIBRATION_METHODS = ["entropy", "minmax", "percentile"]
DEPLOY_BACKENDS = ["auto", "tensorrt", "onnxruntime"]


@dataclass
class CalibrationConfig:
    cal_image_dir: List[str] = spec_field([], "Directories of calibration images (walked recursively).")
    cal_cache_file: Optional[str] = spec_field(
        None, "TensorRT-format calibration cache; reused instead of recalibrating when it exists."
    )
    cal_batch_size: int = spec_field(1, "Images per calibration batch.", gt=0)
    cal_batches: int = spec_field(1, "Number of calibration batches.", gt=0)
    method: str = spec_field("entropy", "Calibration method.", options=CALIBRATION_METHODS)


@dataclass
class TrtConfig:
    data_type: str = spec_field("FP32", "Engine precision.", options=DATA_TYPES)
    workspace_size: int = spec_field(1024, "Builder workspace limit in MiB.", gt=0)
    min_batch_size: int = spec_field(1, "Minimum batch size of the optimization profile.", gt=0)
    opt_batch_size: int = spec_field(1, "Optimal batch size of the optimization profile.", gt=0)
    max_batch_size: int = spec_field(1, "Maximum batch size of the optimization profile.", gt=0)
    layers_precision: List[str] = spec_field([], "Per-layer precision overrides as 'layer_name:precision'.")
    calibration: CalibrationConfig = spec_field(CalibrationConfig, "INT8 calibration.")


@dataclass
class GenTrtEngineConfig:
    results_dir: Optional[str] = spec_field(None, "Where gen_trt_engine writes its outputs.")
    gpu_id: int = spec_field(0, "GPU index used to build the engine.", ge=0)
    onnx_file: Optional[str] = spec_field(None, "Exported .onnx (or .etlt with -k) to build from.")
    trt_engine: Optional[str] = spec_field(None, "Path of the engine file to write.")
    timing_cache: Optional[str] = spec_field(None, "TensorRT timing cache file (read and updated).")
    input_channel: int = spec_field(3, "Input channels.", options=[1, 3])
    input_width: int = spec_field(960, "Input width.", gt=0)
    input_height: int = spec_field(544, "Input height.", gt=0)
    batch_size: int = spec_field(-1, "Batch size of the engine; -1 keeps the ONNX's dynamic batch.", ge=-1)
    verbose: bool = spec_field(False, "Verbose builder log.")
    backend: str = spec_field(
        "auto", "Engine backend: TensorRT when usable, else ONNX Runtime.", options=DEPLOY_BACKENDS
    )
    tensorrt: TrtConfig = spec_field(TrtConfig, "Precision, workspace and optimization profile.")


def check_trt_rules(cfg, path: str = "gen_trt_engine") -> list:
    """Cross-field rules of a gen_trt_engine section: min <= opt <= max batch."""
    from tao_core.errors import SpecError

    t = cfg.tensorrt
    if not t.min_batch_size <= t.opt_batch_size <= t.max_batch_size:
        return [
            SpecError(
                f"{path}.tensorrt.opt_batch_size",
                [t.min_batch_size, t.opt_batch_size, t.max_batch_size],
                "min_batch_size <= opt_batch_size <= max_batch_size",
            )
        ]
    return []
