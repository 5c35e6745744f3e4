"""`gen_trt_engine`: a OneFormer ONNX (or .etlt) -> FP32 / FP16 / INT8 engine.

Reads the gen_trt_engine section (onnx_file, trt_engine, input_height/width for a graph without
fixed sizes, batch_size or tensorrt.min/opt/max_batch_size, tensorrt.data_type, workspace_size,
layers_precision, calibration.*) and builds with tao_deploy.build_from_spec: the precision passes
every network uses (FP16 cast keeping Softmax / LayerNormalization / Exp / Sqrt ... in float32,
INT8 Q/DQ on Conv / MatMul / Gemm from calibration), on the chosen backend (auto: TensorRT when
usable, else ONNX Runtime).

What is OneFormer's own:
- the task branch stays float32: every node computed from `task_tokens` alone (the task MLP)
  is added to tensorrt.layers_precision as '<node>:fp32'. Its input is token ids up to 49407 read
  as numbers: in FP16 that is close to the largest value (65504), so the first layer's sums
  overflow once its weights on the start / end tokens add up to more than ~1.3; INT8 would map
  0..49407 onto 256 levels ~390 apart, erasing the ids that name the task. The branch is a few
  small layers, so keeping it costs nothing measurable (on the tiny test model FP16 vs FP32 max
  relative error is 0.95% on pred_logits with it kept, 1.02% without);
- INT8 calibration batches carry both inputs: the images of calibration.cal_image_dir (resized
  as inference does) with the three tasks' tokens in turn, so the ranges cover every mode;
- an FP16 / INT8 engine is compared with the FP32 graph on images set aside from calibration
  (else dataset.test.images) through the shared agreement check, with the instance-mode decode
  (tao_deploy.oneformer.segmenter.instance_decoder), and a degraded engine is said loudly.
The engine records the class names (labels.txt beside the ONNX when it has one name per model
class, else the spec's classes), how `images` is fed (ours: 0..255; TAO's ONNX: pre-normalised
with dataset.pixel_mean / pixel_std) and the task-token length.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import replace

import numpy as np
from omegaconf import OmegaConf

from tao_core.data.images import load_image_rgb
from tao_core.errors import SpecError
from tao_core.processing.oneformer import MODES
from tao_core.tasks.oneformer_outputs import (
    INPUT_RANGE,
    INPUT_RANGE_KEY,
    inference_classes,
    network_input,
    normalise_input,
    task_tokens,
)
from tao_deploy.detr.gen_trt_engine import model_input_hw
from tao_deploy.engine import agreement as agr
from tao_deploy.engine import calibration as cal
from tao_deploy.engine.builder import CHECK_IMAGES, build_from_spec, check_agreement, check_spec_paths, record_agreement
from tao_deploy.engine.onnx_io import input_specs, load_onnx, output_specs, static_dim
from tao_deploy.oneformer.segmenter import IMAGES_RANGE, check_oneformer_io, instance_decoder

logger = logging.getLogger(__name__)


def task_branch_nodes(model) -> list[str]:
    """Names of the nodes whose every non-constant input derives from `task_tokens` alone."""
    consts = {i.name for i in model.graph.initializer}
    derived = {"task_tokens"}
    names = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        live = [i for i in node.input if i and i not in consts]
        if node.op_type == "Constant" or not live:
            consts.update(node.output)
        elif all(i in derived for i in live):
            derived.update(node.output)
            names.append(node.name)
    return names


class TaskImageBatches:
    """Batches {images, task_tokens} of image files, the tasks in turn (calibration and the agreement check)."""

    def __init__(self, paths, batch_size: int, size_hw, task_len: int, normalise: tuple | None):
        self.paths, self.batch_size = list(paths), int(batch_size)
        self.size_hw, self.task_len, self.normalise = size_hw, int(task_len), normalise

    def __len__(self) -> int:
        return len(self.paths) // self.batch_size

    def __iter__(self):
        for i in range(len(self)):
            chunk = self.paths[i * self.batch_size:(i + 1) * self.batch_size]
            try:
                x = np.stack([network_input(load_image_rgb(p), self.size_hw) for p in chunk])
            except (OSError, ValueError) as e:
                raise SpecError("gen_trt_engine.tensorrt.calibration.cal_image_dir", str(chunk[0]),
                                f"readable images ({e})") from None
            if self.normalise is not None:
                x = normalise_input(x, *self.normalise)
            yield {"images": x, "task_tokens": task_tokens(MODES[i % len(MODES)], self.task_len, len(chunk))}


def engine_class_names(cfg, onnx_file: str, num_classes: int) -> tuple[list[str], str]:
    labels = os.path.join(os.path.dirname(os.path.abspath(onnx_file)), "labels.txt")
    if os.path.isfile(labels):
        with open(labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) == num_classes:
            return names, labels
        logger.warning("%s lists %d names but the model has %d classes: using the spec's classes", labels,
                       len(names), num_classes)
    classes = inference_classes(cfg, num_classes)
    return classes.names, classes.source


def _spec_with_fp32_nodes(spec, nodes: list[str]):
    """A writable copy of the gen_trt_engine section with `nodes` added to tensorrt.layers_precision."""
    out = copy.deepcopy(spec)
    OmegaConf.set_readonly(out, False)
    out.tensorrt.layers_precision = list(spec.tensorrt.layers_precision) + [f"{n}:fp32" for n in nodes]
    return out


def _check_images(cfg, spec, batch: int) -> list:
    c = spec.tensorrt.calibration
    paths = []
    if c.cal_image_dir:
        paths = cal.held_out_images(list(c.cal_image_dir), c.cal_batch_size * c.cal_batches, CHECK_IMAGES)
    if len(paths) < batch and cfg.dataset.test.images and os.path.isdir(str(cfg.dataset.test.images)):
        paths = cal.find_images([str(cfg.dataset.test.images)])[1][:CHECK_IMAGES]
    return paths[: len(paths) // batch * batch]


def run(cfg, ctx) -> dict:
    spec = cfg.gen_trt_engine
    precision = check_spec_paths(spec)  # files named, no engine overwritten, a known precision: before reading

    model = load_onnx(spec.onnx_file, ctx.key)  # missing file, missing / wrong key: now
    where = str(spec.onnx_file)
    inputs = {s.name: s.shape for s in input_specs(model)}
    outputs = {s.name: s.shape for s in output_specs(model)}
    check_oneformer_io(inputs, list(outputs), where)
    size_hw = model_input_hw(spec, inputs["images"], where)
    task_len = int(inputs["task_tokens"][1])
    props = {p.key: p.value for p in model.metadata_props}
    in_graph = props.get(INPUT_RANGE_KEY) == INPUT_RANGE
    mean, std = list(cfg.dataset.pixel_mean), list(cfg.dataset.pixel_std)
    if not in_graph:
        logger.info("%s has no %s mark (TAO's export): its images are fed normalised with dataset.pixel_mean / "
                    "pixel_std", where, INPUT_RANGE_KEY)
    logits = outputs["pred_logits"]
    num_classes = (static_dim(logits[-1]) or int(cfg.model.sem_seg_head.num_classes) + 1) - 1
    class_names, names_from = engine_class_names(cfg, where, num_classes)

    task_nodes = task_branch_nodes(model)
    logger.info("task branch kept in float32: %d nodes (%s)", len(task_nodes), ", ".join(task_nodes[:6]))
    build_spec = _spec_with_fp32_nodes(spec, task_nodes) if precision != "fp32" else spec
    normalise = None if in_graph else (mean, std)
    calibration = None
    c = spec.tensorrt.calibration
    cache_exists = bool(c.cal_cache_file) and os.path.isfile(str(c.cal_cache_file))
    if precision == "int8" and c.cal_image_dir and not cache_exists:
        fixed = static_dim(inputs["images"][0])
        batch = fixed or int(c.cal_batch_size)
        paths = cal.list_calibration_images(list(c.cal_image_dir), batch, c.cal_batches)
        calibration = TaskImageBatches(paths, batch, size_hw, task_len, normalise)
        logger.info("INT8 calibration: %d images (%d batches of %d), tasks %s in turn", len(calibration) * batch,
                    len(calibration), batch, "/".join(MODES))

    metadata = {"network": ctx.network, IMAGES_RANGE: INPUT_RANGE if in_graph else "normalised",
                "pixel_mean": mean, "pixel_std": std, "task_seq_len": task_len, "class_names_from": names_from}
    info = build_from_spec(build_spec, calibration_data=calibration, model=model, key=ctx.key,
                           class_names=class_names, metadata=metadata)
    if precision != "fp32":
        info = _agreement(cfg, spec, model, info, size_hw, task_len, normalise)
    profile = info.metadata["profile"]["images"]
    summary = {
        "trt_engine": str(info.path), "backend": info.backend, "backend_version": info.backend_version,
        "precision": info.precision, "input_shape": {k: profile[k] for k in ("min", "opt", "max")},
        "class_names": class_names, "task_nodes_fp32": task_nodes if precision != "fp32" else [],
        "calibration_cache": str(info.calibration_cache) if info.calibration_cache else None,
    }
    message = (f"Built {info.precision.upper()} engine {info.path} with {info.backend} {info.backend_version} "
               f"(images {size_hw[0]}x{size_hw[1]}, task tokens {task_len}, batch {profile['min'][0]}.."
               f"{profile['max'][0]})")
    logger.info(message)
    ctx.status.write("RUNNING", message)
    record_agreement(ctx.status, info, summary)
    return summary


def _agreement(cfg, spec, model, info, size_hw, task_len, normalise):
    """The built engine vs the FP32 graph on held-out images (the builder's check, fed both inputs)."""
    trt = spec.tensorrt
    lo, hi = (spec.batch_size, spec.batch_size) if spec.batch_size > 0 else (trt.min_batch_size, trt.max_batch_size)
    fixed = static_dim(input_specs(model)[0].shape[0])
    batch = fixed or min(max(lo, 2), hi)  # batches of 2 when the profile allows: the batch dim is exercised
    paths = _check_images(cfg, spec, batch)
    if not paths and not fixed and lo < batch:
        batch = lo
        paths = _check_images(cfg, spec, batch)
    if not paths:
        logger.warning("no images left aside from calibration (nor dataset.test.images) to check the %s engine "
                       "against FP32 on: not checked", info.precision.upper())
        return info
    batches = TaskImageBatches(paths, batch, size_hw, task_len, normalise)
    found, degraded = check_agreement(model, info.path, batches, instance_decoder(), agr.Thresholds(),
                                       info.precision, info.metadata)
    return replace(info, agreement=found, degraded=degraded)
