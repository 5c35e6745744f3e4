"""DetectNet_v2 engines: build one from the exported ONNX / .etlt, and run one on images.

    info = build_detectnet_engine("model.etlt", "model.engine", "int8", key=KEY,
                                  cal_data_file="cal.tensorfile", cal_cache_file="cal.bin")
    predict = EnginePredictor("model.engine")      # NCHW float images -> (output_cov, output_bbox)

The engine contract is TAO's export: input `input_1` (N, C, H, W) RGB in [0, 1], outputs
`output_cov/Sigmoid` (N, K, H/16, W/16) and `output_bbox/BiasAdd` (N, 4K, H/16, W/16).

INT8 goes through tao_deploy.build_from_spec (one calibration path for every network):
calibration data from `cal_data_file` (a tensorfile of calibration_tensorfile; written from
`cal_image_dir` when it does not exist yet, as TAO's export does), else `cal_image_dir` images
(tao_core.tasks.detectnet_v2.preprocess_image), and an existing `cal_cache_file` is reused
without data. A QAT model (its ONNX holds Q/DQ pairs) is not calibrated: its learned scales
(tao_deploy.engine.qat_scales) are written as the TensorRT calibration cache and the engine's
Q/DQ graph is built from that cache; convolutions whose input has no learned scale (the
network input: tfmot does not quantize it) stay float. `force_ptq` calibrates the QAT model's
float graph instead, as TAO's --force_ptq does.

Post-training INT8 keeps the two output heads (the convolutions feeding output_cov/Sigmoid and
output_bbox/BiasAdd, `head_convs`) in float: 1x1 convolutions with a handful of output channels,
a few percent of the compute, whose rounding goes straight into the coverage the clustering
thresholds and the box edges the AP's IoU test measures. Measured on the demo's models
(resnet_10 128x96, 200 images, ONNX Runtime CPU graph): mean IoU with the FP32 boxes 0.985 ->
0.990 (unpruned) and 0.988 -> 0.991 (pruned, -pth 0.1); with 7-bit weights (CPUs without VNNI)
0.983 -> 0.989 unpruned, 0.977 either way pruned. Latency: the same at batch 1, 3 % (unpruned)
and 12 % (pruned) more at batch 8 (AVX-512 VNNI, 2 cores under a load of 3-5).

After an FP16 / INT8 build the engine is compared with FP32 (tao_deploy.engine.agreement) with
DetectNet_v2's own thresholds (`AGREEMENT`): its boxes follow FP32 far more closely than a
transformer's, so the generic mean IoU bound (0.8) would pass engines that lose AP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tao_core.data.images import load_image_rgb
from tao_core.errors import TaoUserError
from tao_core.io.output_set import refuse_existing
from tao_core.processing.detectnet import DEFAULT_OFFSET, DEFAULT_SCALE, ClusteringParams, postprocess_detectnet
from tao_core.specs.common import CalibrationConfig, GenTrtEngineConfig, TrtConfig
from tao_core.tasks.detectnet_v2 import preprocess_image
from tao_deploy.engine import calibration as cal
from tao_deploy.engine.agreement import Thresholds
from tao_deploy.engine.builder import CHECK_IMAGES, EngineInfo, build_engine, build_from_spec
from tao_deploy.engine.onnx_io import input_specs, load_onnx, output_specs, static_dim
from tao_deploy.engine.precision import normalize_precision
from tao_deploy.engine.qat_scales import has_qdq, learned_scales
from tao_deploy.runtime import Engine, load_engine

log = logging.getLogger(__name__)

INPUT_NAME = "input_1"
COV, BBOX = "output_cov/Sigmoid", "output_bbox/BiasAdd"
# Clustering of the FP16 / INT8 vs FP32 agreement check when no spec gives one: every cell with
# some coverage, no minimum height (small test and demo inputs).
CHECK_CLUSTERING = ClusteringParams(coverage_threshold=0.05, minimum_bounding_box_height=0.0)
# Below these an FP16 / INT8 engine is reported DEGRADED (in place of the generic DETR-measured
# ones). Measured on the demo's models, INT8 vs FP32 on the 8 check images (and on 200 images):
# mean IoU of the engines whose AP on the 128-image training fold stays within 0.1 point of
# FP32's 0.989 - 0.993 (0.989 - 0.991); of the one of issue 9, 5.6 points lower on the 32-image
# fold, 0.976; of a pruned one with 7-bit weights (CPUs without VNNI), 1.7 points lower on the
# 128 images, 0.982 (0.977); of a clipping calibration, 13-16 points lower, 0.76.
# Confidences are aggregate_cov sums (1.9 - 3.5 on the demo), not probabilities: engines that
# keep AP moved them by 0.011 - 0.055, hence a wider score bound than DETR's 0.05.
AGREEMENT = Thresholds(min_mean_iou=0.985, min_top1_iou=0.985, max_score_abs_diff=0.1)


def check_detectnet_io(model, where: str) -> tuple[int, int, int]:
    """(C, H, W) of a DetectNet_v2 ONNX; anything off TAO's export contract is one clear error."""
    from tao_core.cli.detectnet_v2_args import MIN_ONNX_OPSET

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset < MIN_ONNX_OPSET:
        raise TaoUserError(f"{where}: ONNX opset {opset} is older than {MIN_ONNX_OPSET}, the oldest ONNX Runtime "
                           "runs; re-export with `tao model detectnet_v2 export --target_opset 12` (TAO's default)")
    inputs = input_specs(model)
    outputs = [o.name for o in output_specs(model)]
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise TaoUserError(f"{where}: a DetectNet_v2 model has one (N, C, H, W) input; this one has "
                           f"{[(s.name, list(s.shape)) for s in inputs]}")  # fmt: skip
    missing = [n for n in (COV, BBOX) if n not in outputs]
    if missing:
        raise TaoUserError(f"{where}: outputs {outputs} lack {missing}; expected TAO's DetectNet_v2 export "
                           f"({COV}, {BBOX}), e.g. from `tao model detectnet_v2 export`")  # fmt: skip
    dims = [static_dim(d) for d in inputs[0].shape[1:]]
    if None in dims:
        raise TaoUserError(f"{where}: input {inputs[0].name!r} has dynamic C/H/W {list(inputs[0].shape)}; "
                           "DetectNet_v2 exports fix them")  # fmt: skip
    head_classes({o.name: o.shape for o in output_specs(model)}, where)
    return tuple(dims)


def head_classes(output_shapes: dict, where: str) -> int | None:
    """Classes of the heads (output_cov channels; None when dynamic). output_bbox must carry 4 per
    class: another shape is a model of another network, or a broken export."""
    cov, bbox = (static_dim(output_shapes[n][1]) if len(output_shapes[n]) == 4 else None for n in (COV, BBOX))
    if cov is not None and bbox is not None and bbox != 4 * cov:
        raise TaoUserError(f"{where}: {COV} has {cov} channels (classes) and {BBOX} {bbox}; a DetectNet_v2 model "
                           f"has 4 bbox channels per class ({4 * cov})")  # fmt: skip
    return cov


def check_classes(names: Sequence[str], output_shapes: dict, where: str, named_by: str) -> None:
    """The class names given match the model's heads (before any work on them)."""
    count = head_classes(output_shapes, where)
    if names and count is not None and len(names) != count:
        raise TaoUserError(f"{where}: the model predicts {count} class(es) ({COV} channels), {named_by} names "
                           f"{len(names)}: {list(names)}")  # fmt: skip


def decoder(class_names: Sequence[str], params=None, scale: float = DEFAULT_SCALE, offset: float = DEFAULT_OFFSET):
    """(outputs, batch) -> per image {scores, labels, boxes}: how agreement with FP32 is measured."""
    names = list(class_names)
    params = params or CHECK_CLUSTERING

    def decode(outputs, batch):
        frames = postprocess_detectnet(outputs[COV], outputs[BBOX], names, tuple(batch.shape[2:4]), params, scale,
                                       offset)  # fmt: skip
        out = []
        for dets in frames:
            out.append({"scores": np.array([d.confidence for d in dets], np.float64),
                        "labels": np.array([names.index(d.class_name) for d in dets], np.int64),
                        "boxes": np.array([d.bbox for d in dets], np.float64).reshape(-1, 4)})  # fmt: skip
        return out

    decode.thresholds = AGREEMENT  # read by agreement.measure_agreement
    return decode


def head_convs(model) -> list[str]:
    """Names of the Conv nodes that produce output_cov/Sigmoid and output_bbox/BiasAdd: walking up
    from each output through ops with one non-constant input (Sigmoid, a bias Add, Identity,
    Reshape, Transpose) to the first Conv."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for name in (COV, BBOX):
        node = producer.get(name)
        while node is not None and node.op_type != "Conv":
            data = [i for i in node.input if i and i not in consts]
            if node.op_type not in ("Sigmoid", "Add", "Identity", "Reshape", "Transpose") or len(data) != 1:
                node = None
                break
            node = producer.get(data[0])
        if node is not None:
            found.append(node.name)
    return found


def build_detectnet_engine(
    onnx_source,
    engine_file: str | os.PathLike,
    data_type: str = "fp32",
    *,
    key: str | None = None,
    cal_data_file: str | None = None,
    cal_image_dir: str | Sequence[str] | None = None,
    cal_cache_file: str | None = None,
    batch_size: int = 8,
    batches: int = 10,
    min_batch_size: int = 1,
    opt_batch_size: int = 1,
    max_batch_size: int = 16,
    force_ptq: bool = False,
    backend: str = "auto",
    workspace_mib: int = 1024,
    class_names: Sequence[str] | None = None,
    clustering=None,
    bbox_scale_offset: tuple[float, float] = (DEFAULT_SCALE, DEFAULT_OFFSET),
    check_images: list | None = None,
    verbose: bool = False,
) -> EngineInfo:
    """Build `engine_file` (refused when it exists) from a DetectNet_v2 ONNX / .etlt (see the module docstring)."""
    precision = normalize_precision(data_type)
    refuse_existing(engine_file, "--engine_file")
    where = str(onnx_source) if isinstance(onnx_source, (str, os.PathLike)) else "<model>"
    model = load_onnx(onnx_source, key)
    c, h, w = check_detectnet_io(model, where)
    if precision == "int8":
        model = _opset_for_int8(model)
    image_dirs = [cal_image_dir] if isinstance(cal_image_dir, (str, os.PathLike)) else list(cal_image_dir or [])
    keep_float: list[str] = []
    qat = has_qdq(model)
    if qat:
        model, amax = learned_scales(model)
        if precision == "int8" and not force_ptq:
            cal_cache_file = _qat_cache(model, amax, cal_cache_file, Path(engine_file))
            keep_float = _convs_without_scale(model, amax)
            log.info("INT8 from the QAT model's learned scales (cache %s); kept in float (no learned input "
                     "scale): %s", cal_cache_file, keep_float or "none")
        elif precision == "int8":
            log.info("--force_ptq: the QAT model's float graph is calibrated (post-training quantization)")
    names = list(class_names or [])
    check_classes(names, {o.name: o.shape for o in output_specs(model)}, where, "the spec / labels.txt")
    heads = head_convs(model) if precision == "int8" and not (qat and not force_ptq) else []
    if heads:
        log.info("INT8: the output heads stay in float (%s)", ", ".join(heads))
    spec = GenTrtEngineConfig(
        onnx_file=where, trt_engine=str(engine_file), input_channel=c, input_height=h, input_width=w,
        batch_size=-1, backend=backend, verbose=verbose,
        tensorrt=TrtConfig(
            data_type=precision.upper(), workspace_size=int(workspace_mib), min_batch_size=min_batch_size,
            opt_batch_size=opt_batch_size, max_batch_size=max_batch_size,
            layers_precision=[f"{n}:fp32" for n in heads],  # kept in float by the INT8 pass as well
            calibration=CalibrationConfig(cal_image_dir=[str(d) for d in image_dirs], cal_cache_file=cal_cache_file,
                                          cal_batch_size=batch_size, cal_batches=batches),
        ),
    )  # fmt: skip
    metadata = {"network": "detectnet_v2", "qat": qat and not force_ptq, "bbox_scale": bbox_scale_offset[0],
                "bbox_offset": bbox_scale_offset[1]}  # fmt: skip

    def preprocess(path):
        return preprocess_image(load_image_rgb(path), (h, w), c)

    decode = decoder(names, clustering, *bbox_scale_offset) if names else None
    if keep_float or (qat and precision == "int8" and not force_ptq):
        # The learned Q/DQ sits on the inputs of the quantized ops: build that form (TensorRT's
        # explicit quantization) on every backend; ONNX Runtime's CPU form would also need ranges
        # of convolution outputs, which QAT does not learn.
        check = None
        if decode is not None:  # nothing is calibrated: any of these images is held out
            found = cal.find_images([str(d) for d in image_dirs])[1] if image_dirs else list(check_images or [])
            paths = found[:CHECK_IMAGES]
            step = max(1, min(4, max_batch_size, len(paths)))
            paths = paths[: len(paths) // step * step]
            check = cal.ImageBatches(paths, step, preprocess) if paths else None
        return build_engine(
            model, engine_file, "int8", calibration=cal.Calibration(cache_file=cal_cache_file,
                                                                    exclude_nodes=tuple(keep_float)),
            backend=backend, workspace_mib=workspace_mib, metadata=metadata, class_names=names,
            min_batch=min_batch_size, opt_batch=opt_batch_size, max_batch=max_batch_size, verbose=verbose,
            int8_graph="tensorrt", check_data=check, decode=decode,
        )  # fmt: skip
    return build_from_spec(spec, preprocess=preprocess, model=model, class_names=names, metadata=metadata,
                           cal_data_file=cal_data_file or None, decode=decode, check_images=check_images)  # fmt: skip


# Per-channel QuantizeLinear / DequantizeLinear (the `axis` attribute) exist from opset 13;
# TAO's DetectNet_v2 export writes opset 12 by default.
INT8_MIN_OPSET = 13


def _opset_for_int8(model):
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), INT8_MIN_OPSET)
    if opset >= INT8_MIN_OPSET:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, INT8_MIN_OPSET)
    except Exception as e:  # onnx raises its own error types for ops it cannot convert
        raise TaoUserError(f"the model is opset {opset}; INT8 needs opset {INT8_MIN_OPSET} (per-channel Q/DQ) and "
                           f"the conversion failed ({e}); export with --target_opset {INT8_MIN_OPSET}") from None
    log.info("INT8: the opset %d model is converted to opset %d for per-channel Q/DQ", opset, INT8_MIN_OPSET)
    return converted


def _qat_cache(model, amax: dict[str, float], cache_file: str | None, engine_file: Path) -> str:
    """Write the learned ranges as the TensorRT calibration cache (kept when it already holds them)."""
    path = Path(cache_file) if cache_file else engine_file.with_suffix(".cal.bin")
    if path.is_file():
        existing = cal.read_cache(path).amax()
        same = set(existing) == set(amax) and all(abs(existing[k] - v) <= 1e-6 * max(v, 1e-12) for k, v in amax.items())
        if not same:
            raise TaoUserError(f"--cal_cache_file {path} exists and does not hold this QAT model's learned scales; "
                               "remove it (or name another file) so they can be written")  # fmt: skip
        return str(path)
    if not amax:
        raise TaoUserError("the QAT model's Q/DQ pairs hold no per-tensor activation scale")
    cal.write_cache(path, amax, "entropy")
    log.info("wrote the QAT model's %d learned scales to the calibration cache %s", len(amax), path)
    return str(path)


def _convs_without_scale(model, amax: dict[str, float]) -> list[str]:
    """Conv nodes whose activation input has no learned range: they stay float."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[0] not in consts and n.input[0] not in amax]


class EnginePredictor:
    """An engine as `predict(images NCHW float32) -> (output_cov, output_bbox)`, in batches the
    engine's profile accepts (a last batch below its minimum is zero-padded, the padding dropped)."""

    def __init__(self, engine: Engine | str | os.PathLike):
        self.engine = engine if isinstance(engine, Engine) else load_engine(engine)
        shapes = {n: s["shape"] for n, s in self.engine.inputs.items()}
        missing = [n for n in (COV, BBOX) if n not in self.engine.output_names]
        if len(shapes) != 1 or missing:
            raise TaoUserError(f"{self.engine.source}: not a DetectNet_v2 engine (inputs {sorted(shapes)}, outputs "
                               f"{self.engine.output_names}; expected one input and {COV}, {BBOX})")  # fmt: skip
        (self.input_name,) = shapes
        r = self.engine.profile[self.input_name]
        self.min_batch, self.max_batch = int(r.min[0]), int(r.max[0])
        self.input_chw = tuple(int(d) for d in r.opt[1:])

    @property
    def class_names(self) -> list[str]:
        return self.engine.class_names

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if tuple(images.shape[1:]) != self.input_chw:
            raise TaoUserError(f"{self.engine.source}: the engine takes (C, H, W) {self.input_chw}, "
                               f"got images {tuple(images.shape[1:])}")  # fmt: skip
        covs, bboxes = [], []
        for i in range(0, len(images), self.max_batch):
            chunk = images[i : i + self.max_batch]
            n = len(chunk)
            if n < self.min_batch:
                chunk = np.concatenate([chunk, np.zeros((self.min_batch - n, *chunk.shape[1:]), np.float32)])
            out = self.engine.run({self.input_name: chunk})
            covs.append(out[COV][:n])
            bboxes.append(out[BBOX][:n])
        return np.concatenate(covs), np.concatenate(bboxes)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> EnginePredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
