"""`gen_trt_engine`: a DINO / Deformable DETR ONNX (or .etlt) -> FP32 / FP16 / INT8 engine.

Reads the gen_trt_engine section (onnx_file, trt_engine, input_channel/height/width,
batch_size or tensorrt.min/opt/max_batch_size, tensorrt.data_type, workspace_size,
layers_precision, calibration.*) and builds with tao_deploy.build_from_spec on the chosen
backend (auto: TensorRT when usable, else ONNX Runtime; the choice is logged and in status.json).

INT8 calibration images are read with the network's own evaluation preprocessing
(tao_core.processing.detr.preprocess_image: exact resize to the model's H x W, /255, mean/std of
dataset.augmentation); an existing calibration.cal_cache_file is reused without images.
Beside the engine: the DeepStream nvinfer config of that engine (tao_deploy.detr.deepstream_config).
The engine records the class names (labels.txt beside the ONNX when it fits the model, else
names from the spec's dataset), the network and its normalisation.

Every check on the user's input (files, key, ONNX contract, sizes, calibration folders and image
count) runs before anything is built.
"""

from __future__ import annotations

import logging
import os

from tao_core.data.classmap import label_names
from tao_core.errors import SpecError
from tao_core.processing.detr import normalisation
from tao_deploy.detr.deepstream_config import write_engine_deepstream_files
from tao_deploy.detr.detector import check_detr_io, image_preprocessor, raw_decoder
from tao_deploy.engine.builder import build_from_spec, check_spec_paths, record_agreement
from tao_deploy.engine.calibration import find_images
from tao_deploy.engine.onnx_io import input_specs, load_onnx, output_specs, static_dim

logger = logging.getLogger(__name__)


def model_input_hw(spec, shape, where: str) -> tuple[int, int]:
    """(H, W) the engine takes: the ONNX's fixed dims (TAO's export fixes them), else the spec's."""
    if static_dim(shape[1]) is not None and int(spec.input_channel) != shape[1]:
        raise SpecError("gen_trt_engine.input_channel", spec.input_channel, f"{shape[1]}, the channels of {where}")
    h, w = static_dim(shape[2]), static_dim(shape[3])
    if h is None or w is None:
        return int(spec.input_height), int(spec.input_width)
    if (h, w) != (int(spec.input_height), int(spec.input_width)):
        logger.warning("gen_trt_engine.input_height x input_width = %d x %d, but %s is fixed at %d x %d: "
                       "building for %d x %d", spec.input_height, spec.input_width, where, h, w, h, w)
    return h, w


def engine_class_names(cfg, onnx_file: str, num_classes: int | None) -> tuple[list[str], str]:
    """(names indexed by class id, where they came from): labels.txt written by export beside the
    ONNX when it has one name per model class, else the spec's dataset (label_names)."""
    labels = os.path.join(os.path.dirname(os.path.abspath(onnx_file)), "labels.txt")
    if os.path.isfile(labels):
        with open(labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if num_classes is None or len(names) == num_classes:
            return names, labels
        logger.warning("%s lists %d names but the model has %d classes: using the spec's dataset", labels,
                       len(names), num_classes)
    return label_names(cfg), "dataset"


def validation_images(cfg) -> list[str]:
    """Images of the spec's test / val sources: where an engine is checked when cal_image_dir has
    none left aside from calibration."""
    sources = [cfg.dataset.test_data_sources] if cfg.dataset.get("test_data_sources") else []
    sources += list(cfg.dataset.get("val_data_sources") or [])
    dirs = [str(s.image_dir) for s in sources if s is not None and s.get("image_dir")
            and os.path.isdir(str(s.image_dir))]
    return [str(p) for p in find_images(dirs)[1]] if dirs else []


def run(cfg, ctx) -> dict:
    spec = cfg.gen_trt_engine
    check_spec_paths(spec)  # files named, no engine overwritten, a known precision: before the model is read

    model = load_onnx(spec.onnx_file, ctx.key)  # missing file, missing / wrong key: now
    inputs = input_specs(model)
    outputs = {s.name: s.shape for s in output_specs(model)}
    check_detr_io({s.name: s.shape for s in inputs}, list(outputs), str(spec.onnx_file))
    inp = inputs[0]
    size_hw = model_input_hw(spec, inp.shape, str(spec.onnx_file))
    logits_shape = outputs["pred_logits"]
    num_classes = static_dim(logits_shape[-1]) if len(logits_shape) == 3 else None
    if num_classes is not None and num_classes != int(cfg.dataset.num_classes):
        logger.warning("the model has %d classes, dataset.num_classes is %d", num_classes, cfg.dataset.num_classes)
    class_names, names_from = engine_class_names(cfg, str(spec.onnx_file), num_classes)
    mean, std = normalisation(cfg.dataset.augmentation)

    metadata = {
        "network": ctx.network,
        "input_mean": mean,
        "input_std": std,
        "num_select": int(cfg.model.num_select),
        "class_names_from": names_from,
    }
    info = build_from_spec(spec, preprocess=image_preprocessor(size_hw, mean, std), model=model, key=ctx.key,
                           class_names=class_names, metadata=metadata, decode=raw_decoder(cfg.model.num_select),
                           check_images=validation_images(cfg))
    profile = info.metadata["profile"][inp.name]
    summary = {
        "trt_engine": str(info.path),
        "backend": info.backend,
        "backend_version": info.backend_version,
        "precision": info.precision,
        "input_shape": {"min": profile["min"], "opt": profile["opt"], "max": profile["max"]},
        "class_names": class_names,
        "calibration_cache": str(info.calibration_cache) if info.calibration_cache else None,
    }
    summary.update(write_engine_deepstream_files(cfg, info, spec.onnx_file, size_hw, class_names, mean, std))
    logger.info("DeepStream config of this engine: %s", summary["deepstream_files"][0])
    message = (f"Built {info.precision.upper()} engine {info.path} with {info.backend} {info.backend_version} "
               f"(input {size_hw[0]}x{size_hw[1]}, batch {profile['min'][0]}..{profile['max'][0]})")
    logger.info(message)
    ctx.status.write("RUNNING", message)
    record_agreement(ctx.status, info, summary)
    return summary
