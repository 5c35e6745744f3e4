"""build_engine: exported ONNX -> precision pass -> backend -> self-describing engine file.

Order matters: every check that can fail on the user's input (model file, key, precision,
backend and its options, profile, calibration source) runs before the first expensive step,
and the engine file is written atomically at the very end.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from tao_core.errors import TaoUserError
from tao_deploy import __version__
from tao_deploy.backends import BuildOptions, choose_backend
from tao_deploy.engine import calibration as cal
from tao_deploy.engine import precision as prec
from tao_deploy.engine import tensorfile_source as tfs
from tao_deploy.engine.engine_file import engine_path_is_writable, write_engine
from tao_deploy.engine.onnx_io import ModelSource, input_specs, load_onnx, output_specs, select_outputs, static_dim
from tao_deploy.engine.profile import Profile, batch_profile, validate_profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    path: Path
    backend: str
    backend_version: str
    precision: str
    metadata: dict
    calibration_cache: Path | None = None


def build_engine(
    onnx_model: ModelSource,
    out_path: str | os.PathLike,
    precision: str = "fp32",
    profile: Profile | None = None,
    calibration: cal.Calibration | None = None,
    backend: str = "auto",
    workspace_mib: float = 1024,
    timing_cache: str | os.PathLike | None = None,
    metadata: dict | None = None,
    *,
    key: str | bytes | None = None,
    outputs: list[str] | None = None,
    class_names: list[str] | None = None,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 1,
    input_dims: dict[str, tuple[int, ...]] | None = None,
    dla_core: int | None = None,
    strict_types: bool = False,
    fp16_keep_fp32_ops: tuple[str, ...] = prec.FP16_KEEP_FP32_OPS,
    keep_fp32_nodes: tuple[str, ...] = (),
    verbose: bool = False,
) -> EngineInfo:
    """Build an engine file from an ONNX model (path, .etlt with `key`, bytes or ModelProto).

    `profile` maps each input to a ShapeRange; without one, the batch dim spans
    min/opt/max_batch and other dynamic dims come from `input_dims`. INT8 needs `calibration`
    (data, or an existing cache file). `metadata` extras are stored in the engine header.
    """
    precision = prec.normalize_precision(precision)
    engine_path_is_writable(out_path)
    model = load_onnx(onnx_model, key)
    if outputs:
        model = select_outputs(model, outputs)
    options = BuildOptions(
        workspace_mib=workspace_mib,
        timing_cache=str(timing_cache) if timing_cache else None,
        dla_core=dla_core,
        strict_types=strict_types,
        verbose=verbose,
    )
    if workspace_mib <= 0:
        raise TaoUserError(f"workspace size must be > 0 MiB, got {workspace_mib}")
    backend_mod = choose_backend(backend)
    backend_mod.check(precision, options)
    inputs = input_specs(model)
    profile = profile or batch_profile(inputs, min_batch, opt_batch, max_batch, input_dims)
    validate_profile(profile, inputs)
    cache = _check_calibration(precision, calibration, inputs, profile)

    prepared, cache_path = _apply_precision(model, precision, calibration, cache, fp16_keep_fp32_ops, keep_fp32_nodes)
    log.info("building %s engine with %s", precision.upper(), backend_mod.NAME)
    payload = backend_mod.build(prepared, profile, options)

    meta = {
        **(metadata or {}),
        "format": "tao-deploy-engine",
        "backend": backend_mod.NAME,
        "backend_version": backend_mod.version(),
        "device": backend_mod.device(),
        "precision": precision,
        "inputs": [s.to_json() for s in input_specs(prepared)],
        "outputs": [s.name for s in output_specs(prepared)],
        "output_specs": [s.to_json() for s in output_specs(prepared)],
        "class_names": list(class_names or (metadata or {}).get("class_names", [])),
        "profile": {k: v.to_json() for k, v in profile.items()},
        "tao_deploy_version": __version__,
        "onnx_opset": _default_opset(prepared),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    write_engine(out_path, meta, payload)
    log.info(
        "wrote %s (%s, %s %s, %d bytes)",
        out_path,
        precision.upper(),
        meta["backend"],
        meta["backend_version"],
        len(payload),
    )
    return EngineInfo(Path(out_path), meta["backend"], meta["backend_version"], precision, meta, cache_path)


def prepare_onnx(model: onnx.ModelProto, precision: str, calibration: cal.Calibration | None = None) -> onnx.ModelProto:
    """The precision pass alone (for inspection, or for DeepStream's onnx-file)."""
    precision = prec.normalize_precision(precision)
    cache = _check_calibration(precision, calibration, input_specs(model))
    return _apply_precision(model, precision, calibration, cache, prec.FP16_KEEP_FP32_OPS, ())[0]


def _check_calibration(
    precision: str, calibration: cal.Calibration | None, inputs=None, profile: Profile | None = None
) -> cal.CalibrationCache | None:
    if precision != "int8":
        if calibration is not None and calibration.data is not None:
            log.info("calibration data given but precision is %s: not used", precision.upper())
        return None
    if calibration is None:
        raise TaoUserError("INT8 needs calibration: calibration data or an existing calibration cache file")
    cache = calibration.cached()  # a corrupt cache raises here, before any work
    if cache is None and calibration.data is None:
        where = f" ({calibration.cache_file} does not exist)" if calibration.cache_file else ""
        raise TaoUserError(f"INT8 needs calibration data (e.g. cal_image_dir) or an existing calibration cache{where}")
    # A batch source that can check itself against the model (a tensorfile: batch count and
    # shapes) does so now, before any work.
    validate = getattr(calibration.data, "validate", None)
    if cache is None and inputs is not None and callable(validate):
        validate(inputs, profile)
    return cache


def _apply_precision(model, precision, calibration, cache, keep_fp32_ops, keep_fp32_nodes):
    if precision == "fp32":
        return model, None
    if precision == "fp16":
        return prec.cast_to_fp16(model, keep_fp32_ops, keep_fp32_nodes), None
    cache_path = Path(calibration.cache_file) if calibration.cache_file else None
    if cache is not None:
        log.info("INT8: reusing calibration cache %s (%d tensors, %s)", cache_path, len(cache.scales), cache.algorithm)
        amax = cache.amax()
    else:
        specs = input_specs(model)
        reader = cal.make_data_reader(calibration.data, [s.name for s in specs], {s.name: s.dtype for s in specs})
        log.info("INT8: calibrating (%s)", calibration.method)
        amax = prec.compute_amax(model, reader, calibration.method, calibration.percentile)
        if cache_path is not None:
            cal.write_cache(cache_path, amax, calibration.method)
            log.info("INT8: wrote calibration cache %s", cache_path)
    op_types = calibration.op_types or prec.INT8_OP_TYPES
    return prec.insert_qdq(model, amax, op_types, calibration.exclude_nodes), cache_path


def _default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def build_from_spec(
    spec,
    calibration_data: cal.BatchSource | None = None,
    preprocess=None,
    *,
    key: str | bytes | None = None,
    class_names: list[str] | None = None,
    metadata: dict | None = None,
    outputs: list[str] | None = None,
    cal_data_file: str | os.PathLike | None = None,
    model: ModelSource | None = None,
) -> EngineInfo:
    """Build from a tao_core.specs.common.GenTrtEngineConfig section.

    INT8 data comes from `calibration_data` (any batch source), else from `cal_data_file` (a
    TAO tensorfile, e.g. from DetectNet_v2's calibration_tensorfile: its first cal_batches
    records, each cut to cal_batch_size samples, as TAO's TensorfileCalibrator reads them),
    else from the spec's cal_image_dir read with `preprocess(path) -> CHW float32`. A
    cal_data_file that does not exist yet is written from cal_image_dir during calibration
    (TAO's --cal_data_file with --cal_image_dir). An existing cal_cache_file makes all of
    them unnecessary. (The spec has no cal_data_file field: it is a Python argument / CLI flag.)
    A model with a fixed batch is calibrated in batches of that size. `model`: the ONNX already
    loaded by the caller (so an .etlt is decrypted once); default: read spec.onnx_file.
    """
    trt = spec.tensorrt
    if not spec.onnx_file or not spec.trt_engine:
        raise TaoUserError("gen_trt_engine.onnx_file and gen_trt_engine.trt_engine must both be set")
    precision = prec.normalize_precision(trt.data_type)
    model = load_onnx(spec.onnx_file if model is None else model, key)
    calibration = None
    if precision == "int8":
        c = trt.calibration
        cache_exists = bool(c.cal_cache_file) and Path(c.cal_cache_file).is_file()
        data = calibration_data
        if data is None and not cache_exists and cal_data_file is not None:
            data = _tensorfile_data(cal_data_file, c, preprocess)
        elif data is None and not cache_exists and c.cal_image_dir:
            data = _image_data(c, preprocess, _fixed_batch(model))
        elif data is None and not cache_exists:
            raise TaoUserError(
                "INT8 needs calibration images (gen_trt_engine.tensorrt.calibration.cal_image_dir) or an existing "
                f"calibration cache (cal_cache_file{'=' + str(c.cal_cache_file) if c.cal_cache_file else ''})"
            )
        calibration = cal.Calibration(data=data, method=c.method, cache_file=c.cal_cache_file)
    # The spec's C/H/W fill dynamic image dims only; a model with fixed dims keeps its own.
    chw = (spec.input_channel, spec.input_height, spec.input_width)
    input_dims = {
        s.name: chw
        for s in input_specs(model)
        if len(s.shape) == 4 and not all(static_dim(d) for d in s.shape[1:])
    }
    keep_fp32_nodes = _fp32_layers(trt.layers_precision)
    batch = spec.batch_size
    lo, opt, hi = (
        (batch, batch, batch) if batch and batch > 0 else (trt.min_batch_size, trt.opt_batch_size, trt.max_batch_size)
    )
    return build_engine(
        model,
        spec.trt_engine,
        precision,
        calibration=calibration,
        backend=spec.backend,
        workspace_mib=trt.workspace_size,
        timing_cache=spec.timing_cache,
        metadata=metadata,
        outputs=outputs,
        class_names=class_names,
        min_batch=lo,
        opt_batch=opt,
        max_batch=hi,
        input_dims=input_dims,
        keep_fp32_nodes=keep_fp32_nodes,
        verbose=spec.verbose,
    )


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size of a model exported with a static batch, else None."""
    return static_dim(input_specs(model)[0].shape[0])


def _image_data(c, preprocess, fixed_batch: int | None = None) -> cal.ImageBatches:
    if preprocess is None:
        raise TaoUserError("calibrating from cal_image_dir needs the network's preprocess function")
    paths = cal.list_calibration_images(list(c.cal_image_dir), c.cal_batch_size, c.cal_batches)
    batch = c.cal_batch_size
    if fixed_batch is not None and fixed_batch != batch:
        log.info("the ONNX has a fixed batch of %d: calibrating in batches of %d instead of %d",
                 fixed_batch, fixed_batch, batch)
        batch = fixed_batch
        if len(paths) < batch:
            raise TaoUserError(f"calibration of a batch-{batch} model needs at least {batch} images, "
                               f"cal_batch_size x cal_batches gives {len(paths)}")
    data = cal.ImageBatches(paths, batch, preprocess)
    log.info("INT8 calibration: %d images (%d batches of %d) from %s, %s", len(data) * batch, len(data), batch,
             ", ".join(map(str, c.cal_image_dir)), c.method)
    return data


def _tensorfile_data(cal_data_file, c, preprocess):
    if Path(cal_data_file).exists():
        return tfs.tensorfile_batches(cal_data_file, max_batches=c.cal_batches, batch_size=c.cal_batch_size)
    if not c.cal_image_dir:
        raise TaoUserError(
            f"calibration tensorfile {cal_data_file} not found (cal_data_file); generate it with "
            "calibration_tensorfile, or give cal_image_dir to write it from images"
        )
    log.info("INT8: %s does not exist: it will be written from cal_image_dir", cal_data_file)
    return tfs.TensorfileFromImages(cal_data_file, _image_data(c, preprocess))


def _fp32_layers(layers_precision: list[str]) -> tuple[str, ...]:
    """'node:fp32' entries of tensorrt.layers_precision: nodes kept in float32 by the FP16 pass.

    With strongly typed networks a layer's precision is its graph's types, so only keeping
    nodes in FP32 has a meaning; other precisions are rejected rather than ignored.
    """
    names = []
    for item in layers_precision:
        name, sep, p = item.rpartition(":")
        if not sep or not name or p.lower() != "fp32":
            raise TaoUserError(
                f"layers_precision entry {item!r}: only '<node name>:fp32' is supported (keeps that node in "
                "float32 in an FP16 engine)"
            )
        names.append(name)
    return tuple(names)
