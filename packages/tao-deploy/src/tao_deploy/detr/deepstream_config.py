"""The DeepStream nvinfer config of the DINO / Deformable DETR engine gen_trt_engine just built.

Written beside the engine (nvinfer_config.txt, nvdsinfer_config.yaml, labels.txt), so it states
what was built, not what export guessed:

    network-mode        0 / 1 / 2 for the engine's FP32 / INT8 / FP16
    model-engine-file   the engine; onnx-file the ONNX it was built from (nvinfer rebuilds from
                        it when it cannot deserialize the engine)
    int8-calib-file     the TensorRT-format calibration cache of an INT8 engine
    batch-size          the largest batch of the engine's profile
    infer-dims          the engine's C;H;W
    pre-cluster-threshold  inference.conf_threshold of the spec, so DeepStream keeps the
                        detections `tao deploy <network> inference` draws
"""

from __future__ import annotations

import os

from tao_core.deepstream import write_detr_deepstream_files


def write_engine_deepstream_files(cfg, info, onnx_file, size_hw, class_names, mean, std) -> dict:
    """`info`: the EngineInfo of build_from_spec. Returns {"deepstream_files": [...], "labels_file": ...}."""
    out_dir = os.path.dirname(os.path.abspath(str(info.path)))
    profile = next(iter(info.metadata["profile"].values()))
    cache = info.calibration_cache if info.precision == "int8" else None
    onnx = str(onnx_file)
    written = write_detr_deepstream_files(
        out_dir, list(class_names), tuple(size_hw), mean, std,
        onnx_file=onnx if onnx.endswith(".onnx") else None,  # nvinfer cannot read tao-core's encrypted .etlt
        model_engine_file=info.path,
        int8_calib_file=cache,
        precision=info.precision,
        batch_size=int(profile["max"][0]),
        pre_cluster_threshold=float(cfg.inference.conf_threshold),
    )
    return {"deepstream_files": [str(written["txt"]), str(written["yaml"])], "labels_file": str(written["labels"])}
