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

from tao_core.errors import SpecError, TaoUserError
from tao_core.io.output_set import refuse_existing
from tao_deploy import __version__
from tao_deploy.backends import BuildOptions, choose_backend
from tao_deploy.engine import agreement as agr
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
    # How the engine follows its FP32 graph (agreement.Agreement.to_json()) on held-out images,
    # and what of it is below the thresholds (empty: fine). None when not measured.
    agreement: dict | None = None
    degraded: tuple[str, ...] = ()


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
    int8_graph: str = "auto",
    check_data: cal.BatchSource | None = None,
    decode: agr.Decode | None = None,
    thresholds: agr.Thresholds = agr.Thresholds(),
) -> EngineInfo:
    """Build an engine file from an ONNX model (path, .etlt with `key`, bytes or ModelProto).

    `profile` maps each input to a ShapeRange; without one, the batch dim spans
    min/opt/max_batch and other dynamic dims come from `input_dims`. INT8 needs `calibration`
    (data, or an existing cache file). `metadata` extras are stored in the engine header.

    `int8_graph`: "auto" (the form the backend runs fast: "tensorrt" Q/DQ for TensorRT,
    "onnxruntime_cpu" for ONNX Runtime; see precision.Int8Graph), or one of those two names.
    `check_data` (batches set aside from calibration) with the network's `decode`: an FP16 / INT8
    engine is run against the FP32 graph on them after the build (EngineInfo.agreement), and a
    loud warning names what is below `thresholds` (EngineInfo.degraded).
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

    graph = _int8_graph(int8_graph, backend_mod.NAME) if precision == "int8" else None
    prepared, cache_path, kept = _apply_precision(model, precision, calibration, cache, fp16_keep_fp32_ops,
                                                  keep_fp32_nodes, graph)
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
    if graph is not None:
        meta["int8_graph"] = graph.to_json() | {"calibration_method": calibration.method,
                                                "keep_float": list(calibration.keep_float),
                                                "nodes_kept_float": len(kept)}
    write_engine(out_path, meta, payload)
    log.info(
        "wrote %s (%s, %s %s, %d bytes)",
        out_path,
        precision.upper(),
        meta["backend"],
        meta["backend_version"],
        len(payload),
    )
    found, degraded = None, ()
    if precision != "fp32" and check_data is not None and decode is not None:
        found, degraded = check_agreement(model, out_path, check_data, decode, thresholds, precision, meta)
    return EngineInfo(Path(out_path), meta["backend"], meta["backend_version"], precision, meta, cache_path,
                      found, degraded)


def _int8_graph(name: str, backend: str) -> prec.Int8Graph:
    if name == "auto":
        name = "tensorrt" if backend == "tensorrt" else "onnxruntime_cpu"
    if name == "tensorrt":
        return prec.TENSORRT_INT8
    if name == "onnxruntime_cpu":
        return prec.cpu_int8_graph()
    raise TaoUserError(f"int8_graph {name!r} is not one of ['auto', 'tensorrt', 'onnxruntime_cpu']")


def check_agreement(model, out_path, check_data, decode, thresholds, precision, meta):
    """Run the built engine and the FP32 graph (ONNX Runtime) on the held-out batches and log
    how they agree; a loud warning when they do not. Returns (agreement json, degraded)."""
    import onnxruntime as ort

    from tao_deploy.runtime import load_engine

    names = [s.name for s in input_specs(model)]
    dtypes = {s.name: s.dtype for s in input_specs(model)}
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. a TensorRT-plugin graph: no FP32 reference on ONNX Runtime
        log.warning("the %s engine could not be compared with FP32: ONNX Runtime cannot run the FP32 graph (%s)",
                    precision.upper(), str(e).splitlines()[0][:200])
        return None, ()
    out_names = [o.name for o in session.get_outputs()]

    def feed(batch):
        return cal._as_feed(batch, names, dtypes, 0)

    with load_engine(out_path) as engine:
        found = agr.measure_agreement(
            lambda b: dict(zip(out_names, session.run(out_names, feed(b)))),
            lambda b: engine.run(feed(b)),
            check_data() if callable(check_data) else check_data, decode)
    degraded = tuple(found.degraded(thresholds))
    log.info("%s engine vs FP32 graph on %d held-out images: mean IoU of the top-%d boxes %.3f, best box IoU "
             "%.3f, mean score difference %.4f", precision.upper(), found.images, found.top_k, found.mean_iou,
             found.top1_iou, found.score_abs_diff)
    if found.speedup is not None and found.speedup < MIN_SPEEDUP:
        log.warning("the %s engine ran %.2fx the speed of the FP32 graph here (%s, on %d held-out images): "
                    "reduced precision does not pay on this device%s", precision.upper(), found.speedup,
                    meta.get("device"), found.images,
                    "; ONNX Runtime's INT8 kernels are fast on x86 CPUs with VNNI (AVX512-VNNI / AVX-VNNI), "
                    "this one has none: FP32 may be the better engine here"
                    if precision == "int8" and meta.get("backend") == "onnxruntime" and not prec.cpu_has_vnni()
                    else "")
    if degraded:
        if precision == "int8":
            form = meta.get("int8_graph", {})
            cause = ("INT8 quantization error in precision-sensitive layers, or calibration ranges that clip "
                     f"(method {form.get('calibration_method')}): keep more layers in float with "
                     "gen_trt_engine.tensorrt.int8_keep_float, try tensorrt.calibration.method=minmax or more "
                     "cal_batches, and delete cal_cache_file so it recalibrates")
        else:
            cause = ("FP16 overflow or rounding: keep the affected layers in float32 with "
                     "gen_trt_engine.tensorrt.layers_precision ['<node name>:fp32']")
        log.warning("!" * 78)
        log.warning("DEGRADED %s ENGINE %s: it does not follow the FP32 model (%s).", precision.upper(), out_path,
                    "; ".join(degraded))
        log.warning("Likely cause and fix: %s.", cause)
        log.warning("!" * 78)
    return found.to_json(), degraded


def prepare_onnx(model: onnx.ModelProto, precision: str, calibration: cal.Calibration | None = None) -> onnx.ModelProto:
    """The precision pass alone (for inspection, or for DeepStream's onnx-file)."""
    precision = prec.normalize_precision(precision)
    cache = _check_calibration(precision, calibration, input_specs(model))
    graph = prec.TENSORRT_INT8 if precision == "int8" else None
    return _apply_precision(model, precision, calibration, cache, prec.FP16_KEEP_FP32_OPS, (), graph)[0]


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


def _apply_precision(model, precision, calibration, cache, keep_fp32_ops, keep_fp32_nodes, graph=None):
    """(prepared model, calibration cache path, names of the nodes kept in float)."""
    if precision == "fp32":
        return model, None, ()
    if precision == "fp16":
        return prec.cast_to_fp16(model, keep_fp32_ops, keep_fp32_nodes), None, tuple(keep_fp32_nodes)
    cache_path = Path(calibration.cache_file) if calibration.cache_file else None
    if cache is not None:
        log.info("INT8: reusing calibration cache %s (%d tensors, %s)", cache_path, len(cache.scales), cache.algorithm)
        amax = cache.amax()
    else:
        specs = input_specs(model)
        reader = cal.make_data_reader(calibration.data, [s.name for s in specs], {s.name: s.dtype for s in specs})
        log.info("INT8: calibrating (%s)", calibration.method)
        # Calibrated on the graph as exported: the CPU graph's folded tensors keep their names
        # (precision.fold_constants), so one cache serves the TensorRT and the CPU graph.
        amax = prec.compute_amax(model, reader, calibration.method, calibration.percentile)
        if cache_path is not None:
            cal.write_cache(cache_path, amax, calibration.method)
            log.info("INT8: wrote calibration cache %s", cache_path)
    graph = graph or prec.TENSORRT_INT8
    op_types = calibration.op_types or graph.op_types
    kept = tuple(dict.fromkeys((*calibration.exclude_nodes, *keep_fp32_nodes,
                                *prec.keep_float_nodes(model, calibration.keep_float))))
    reasons = [*(["layers_precision"] if keep_fp32_nodes else []), *(["exclude_nodes"] if calibration.exclude_nodes else []),
               *([f"int8_keep_float {list(calibration.keep_float)}"] if calibration.keep_float else [])]
    log.info("INT8 graph: %s (%s activations, %s weights%s), %d nodes kept in float%s", graph.name,
             graph.activation_type, graph.weight_type, ", 7-bit weights" if graph.reduce_range else "",
             len(kept), f" ({', '.join(reasons)})" if reasons else "")
    try:
        prepared = prec.insert_qdq(model, amax, op_types, kept, graph)
    except TaoUserError as e:
        if cache is None or cache_path is None:
            raise
        raise TaoUserError(f"calibration cache {cache_path}: {e}") from None  # name the file that does not fit
    return prepared, cache_path, kept


def _default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_spec_paths(spec) -> str:
    """The gen_trt_engine section's files, checked before anything is read: onnx_file and
    trt_engine named, an existing engine refused (tao_core.io.output_set's rule for files the user
    names). Returns the normalised tensorrt.data_type (an unsupported one fails here too)."""
    if not spec.onnx_file:
        raise SpecError("gen_trt_engine.onnx_file", None, "the exported .onnx (or .etlt) to build from")
    if not spec.trt_engine:
        raise SpecError("gen_trt_engine.trt_engine", None, "the path of the engine file to write")
    refuse_existing(spec.trt_engine, "gen_trt_engine.trt_engine")
    return prec.normalize_precision(spec.tensorrt.data_type)


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
    decode: agr.Decode | None = None,
    check_images: list | None = None,
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

    INT8 keeps in float the nodes `tensorrt.int8_keep_float` names (when the network's spec has
    that field; precision.keep_float_nodes) and the `layers_precision` '<node>:fp32' ones.
    With the network's `decode` (agreement.Decode) and `preprocess`, an FP16 / INT8 engine is
    checked against the FP32 graph on up to CHECK_IMAGES images: cal_image_dir's images after the
    calibration ones, else `check_images` (e.g. the network's validation images).
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
        calibration = cal.Calibration(data=data, method=c.method, cache_file=c.cal_cache_file,
                                      keep_float=tuple(getattr(trt, "int8_keep_float", None) or ()))
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
    check = None
    if precision != "fp32" and decode is not None and preprocess is not None:
        fixed = _fixed_batch(model)
        check = _check_batches(trt.calibration, check_images, preprocess, fixed or min(max(lo, 4), hi),
                               None if fixed else lo)
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
        check_data=check,
        decode=decode,
    )


# Fewer calibration images than this get a warning (measured: see the package README).
RECOMMENDED_CAL_IMAGES = 32
# Images the FP16 / INT8 engine is compared with the FP32 graph on after the build.
CHECK_IMAGES = 8
# Below this speed ratio to FP32 (measured during the check) the build warns that reduced
# precision does not pay on this device.
MIN_SPEEDUP = 1.1


def _check_batches(c, fallback, preprocess, batch: int, min_batch: int | None = None) -> cal.ImageBatches | None:
    """Batches of images set aside from calibration (see build_from_spec), or None (logged).
    With a dynamic batch (`min_batch`: the profile's minimum), fewer images than `batch` are
    checked in batches of `min_batch` rather than not at all (e.g. a small validation set)."""
    paths = []
    if c.cal_image_dir:
        paths = cal.held_out_images(list(c.cal_image_dir), c.cal_batch_size * c.cal_batches, CHECK_IMAGES)
    if len(paths) < batch and fallback:
        paths = list(fallback)[:CHECK_IMAGES]
    if min_batch is not None and 0 < len(paths) < batch:
        batch = max(1, min_batch)
    paths = paths[: len(paths) // batch * batch]
    if not paths:
        log.warning("no images left aside from calibration to check the engine against FP32 on (cal_image_dir "
                    "holds no more than cal_batch_size x cal_batches, and no validation images): not checked")
        return None
    return cal.ImageBatches(paths, batch, preprocess)


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
    if len(data) * batch < RECOMMENDED_CAL_IMAGES:
        log.warning("INT8 calibration on %d images: %d or more measured best on the demo DINO (16 lost 0.02 mAP); "
                    "raise tensorrt.calibration.cal_batches x cal_batch_size", len(data) * batch,
                    RECOMMENDED_CAL_IMAGES)
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


def record_agreement(status, info: EngineInfo, summary: dict | None = None) -> None:
    """Put an engine's agreement with FP32 into a task's status.json (kpi) and `summary`; a
    degraded engine makes the task's closing line say DEGRADED with a WARNING, not a plain success."""
    if info.agreement is None:
        return
    found = agr.Agreement(**info.agreement)
    kpi = found.kpi()
    if summary is not None:
        summary["agreement_with_fp32"] = info.agreement | {"degraded": list(info.degraded)}
    what = (f"{info.precision.upper()} engine vs FP32 on {found.images} held-out images: mean IoU "
            f"{found.mean_iou:.3f}, best-box IoU {found.top1_iou:.3f}, score diff {found.score_abs_diff:.4f}")
    if info.degraded:
        message = (f"DEGRADED {info.precision.upper()} engine {info.path}: {'; '.join(info.degraded)} "
                   "(see the WARNING in the log for the likely cause and the spec field to change)")
        status.write("RUNNING", what, verbosity="WARNING", kpi=kpi)
        status.final = {"message": message, "verbosity": "WARNING", "kpi": kpi}
    else:
        status.write("RUNNING", what, kpi=kpi)
        status.final = {"kpi": kpi}
