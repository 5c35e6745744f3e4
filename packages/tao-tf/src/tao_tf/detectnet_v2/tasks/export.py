"""`detectnet_v2 export -m MODEL -k KEY [-o OUT] [-e SPEC] [--data_type fp32|fp16|int8] [--engine_file F] ...`.

Writes the ONNX graph (input `input_1`, outputs `output_cov/Sigmoid`, `output_bbox/BiasAdd`):
as plain `.onnx` when OUT ends in .onnx, else as a `.etlt` encrypted with KEY (default
`./<model name>.etlt`). ONNX Runtime is checked against Keras on a real image (the first
--cal_image_dir image, else the spec's first validation frame, else a fixed random image) and
the max abs difference per output is logged and written to status.json. --gen_ds_config writes
`nvinfer_config.txt` and `labels.txt` next to OUT (tao_core.deepstream).

Engines and INT8 go through tao-deploy (tao_deploy.detectnet_v2.engine.build_detectnet_engine,
the code of `tao deploy detectnet_v2 gen_trt_engine`): --engine_file builds an engine of
--data_type (TensorRT on an NVIDIA GPU, else ONNX Runtime) with a --max_batch_size profile.
--data_type int8 writes the TensorRT calibration cache --cal_cache_file (default ./cal.bin)
from, in this order: --cal_data_file when it exists (a calibration_tensorfile output; its
first --batches records, --batch_size samples each); --cal_image_dir (--batch_size x --batches
images, preprocessed as the model's input; written into --cal_data_file when one is named, as
TAO does); the -e spec's training data (no augmentation: the calibration_tensorfile batches);
or an existing --cal_cache_file as is. With -e, an FP16 / INT8 engine is then run against the
FP32 graph on the spec's validation images (tao-deploy's agreement check): the mean box IoU,
score difference and speed ratio go to the log and status.json, with a warning when the engine
disagrees or is not faster than FP32. A QAT model (training_config.enable_qat) is not
calibrated: its exported ONNX holds the learned Q/DQ scales, which become the calibration cache
and the engine's Q/DQ graph; --force_ptq calibrates it like a float model instead.
Without --engine_file, an INT8 export still calibrates and writes the cache (the engine is
built in a temporary folder to check it, then dropped).
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from tao_core.cli.detectnet_v2_args import check_args, parse_args
from tao_core.data.images import list_images, load_image_rgb
from tao_core.errors import TaoUserError
from tao_core.etlt import write_etlt
from tao_core.io.atomic import atomic_write_bytes
from tao_core.io.output_set import refuse_existing
from tao_core.results import Status, setup_task_logging, task_run

log = logging.getLogger("tao_tf.detectnet_v2.export")


def main(argv: list[str]) -> int:
    # the int8 calibration-source check waits for the model: a QAT model brings its own scales
    args = parse_args("export", argv, check=False)
    output = args.output_file or os.path.join(os.getcwd(), os.path.splitext(os.path.basename(args.model))[0] + ".etlt")
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(output))
    if args.engine_file:
        refuse_existing(args.engine_file, "--engine_file")  # before any work
    setup_task_logging(results_dir, "export", verbose=args.verbose)
    with task_run(results_dir, "export", network="detectnet_v2") as status:
        experiment = None
        if args.experiment_spec:
            from tao_core.specs.detectnet_v2 import SPEC

            experiment = SPEC.load("export", args.experiment_spec)
        def check(meta):
            if not (meta.get("qat") and not args.force_ptq):
                check_args("export", args)

        exported = export(args.model, args.key, output, experiment, args.cal_image_dir, args.target_opset,
                          args.static_batch_size, args.gen_ds_config, check)  # fmt: skip
        diffs = exported["max_abs_diff"]
        status.write(Status.RUNNING, "Export complete", kpi={f"max_abs_diff {k}": v for k, v in diffs.items()})
        if args.data_type != "fp32" or args.engine_file:
            info = build_engine(exported, args, experiment)
            if info is not None:
                from tao_deploy.engine.builder import record_agreement

                status.write(Status.RUNNING, f"{info.precision.upper()} engine built with {info.backend} "
                             f"{info.backend_version}" + (f": {info.path}" if args.engine_file else ""))  # fmt: skip
                record_agreement(status, info)
    return 0


def _parity_image(model, experiment, cal_image_dir):
    from tao_core.tasks.detectnet_v2 import preprocess_image

    c, h, w = model.input_shape[1:]
    if cal_image_dir:
        path = list_images(cal_image_dir, "--cal_image_dir")[0]
        return preprocess_image(load_image_rgb(path), (h, w), c)[None], path
    if experiment is not None:
        from tao_tf.detectnet_v2.data.pipeline import numpy_frames

        frame = next(numpy_frames(experiment, "val"))
        return frame["image"].transpose(2, 0, 1)[None].astype(np.float32), frame["image_path"]
    return np.random.default_rng(0).random((1, c, h, w), dtype=np.float32), "a fixed random image"


def export(model_path, key, output, experiment=None, cal_image_dir=None, opset=12, static_batch=-1,
           gen_ds_config=False, check=None) -> dict:  # fmt: skip
    """Export and check (`check(metadata)` runs once the model is read, before the conversion). Returns {"max_abs_diff": {output: ONNX Runtime vs Keras}, "onnx": bytes,
    "classes": [...], "input_chw": (C, H, W), "qat": bool}."""
    from tao_tf.detectnet_v2.model.io import load_model
    from tao_tf.detectnet_v2.model.onnx_export import INPUT_NAME, keras_to_onnx, onnx_runtime_parity

    model, meta, _ = load_model(model_path, key)
    if check is not None:
        check(meta)
    if not key and not output.lower().endswith(".onnx"):
        raise TaoUserError(f"-o {output}: an .etlt output is encrypted and needs -k KEY (or write a .onnx)")
    proto = keras_to_onnx(model, opset, static_batch if static_batch and static_batch > 0 else None)
    data = proto.SerializeToString()
    image, where = _parity_image(model, experiment, cal_image_dir)
    diffs = onnx_runtime_parity(data, model, image)
    log.info("ONNX Runtime vs Keras on %s: max abs diff %s", where, ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    if output.lower().endswith(".onnx"):
        atomic_write_bytes(output, data)
    else:
        write_etlt(output, data, INPUT_NAME, key)
    log.info("Exported %s", output)
    classes = list(meta.get("classes") or [])
    if experiment is not None:
        classes = [t.name for t in experiment.cost_function_config.target_classes]
    if gen_ds_config:
        from tao_core.deepstream import detectnet_v2_config, write_deepstream_files

        if not classes:
            raise TaoUserError("--gen_ds_config: the model file names no classes; pass -e with the training spec")
        cfg = detectnet_v2_config(len(classes), tuple(model.input_shape[1:]), onnx_file=os.path.basename(output))
        write_deepstream_files(os.path.dirname(os.path.abspath(output)), cfg, classes, formats=("txt",))
    return {"max_abs_diff": diffs, "onnx": data, "classes": classes, "input_chw": tuple(model.input_shape[1:]),
            "qat": bool(meta.get("qat"))}  # fmt: skip


def build_engine(exported: dict, args, experiment):
    """The engine / calibration cache of the export flags through tao-deploy (see the module docstring)."""
    try:
        from tao_deploy.detectnet_v2.engine import build_detectnet_engine
    except ImportError as e:
        raise TaoUserError(f"--data_type {args.data_type} / --engine_file need tao-deploy ({e}); "
                           "pip install tao-deploy") from None  # fmt: skip
    int8 = args.data_type == "int8"
    if not args.engine_file and not int8:
        log.info("--data_type %s without --engine_file: nothing to build beyond the ONNX (build the engine with "
                 "`tao deploy detectnet_v2 gen_trt_engine` on the target)", args.data_type)  # fmt: skip
        return None
    options = dict(
        key=None, cal_cache_file=args.cal_cache_file if int8 else None, batch_size=args.batch_size,
        batches=args.batches, max_batch_size=args.max_batch_size, opt_batch_size=min(args.batch_size,
        args.max_batch_size), force_ptq=args.force_ptq, workspace_mib=max(1, args.max_workspace_size // 2**20),
        class_names=exported["classes"], verbose=args.verbose,
    )  # fmt: skip
    if experiment is not None:
        from tao_core.tasks import detectnet_v2 as dn

        options.update(clustering=dn.clustering_params(experiment), bbox_scale_offset=dn.bbox_scale_offset(experiment),
                       check_images=_held_out_images(experiment))
    with tempfile.TemporaryDirectory(prefix="tao-export-") as tmp:
        if int8:
            options.update(_calibration_source(exported, args, experiment, tmp))
        engine_file = args.engine_file or os.path.join(tmp, "int8.engine")
        info = build_detectnet_engine(exported["onnx"], engine_file, args.data_type, **options)
        if int8 and args.cal_cache_file and os.path.isfile(args.cal_cache_file):
            log.info("INT8 calibration cache: %s", args.cal_cache_file)
    return info


def _held_out_images(experiment) -> list[str]:
    """The spec's validation images (at most tao-deploy's CHECK_IMAGES): an FP16 / INT8 engine is
    compared with the FP32 graph on them (agreement and speed in the log and status.json) when
    --cal_image_dir leaves no images aside from calibration, e.g. with a calibration tensorfile."""
    from tao_deploy.engine.builder import CHECK_IMAGES
    from tao_tf.detectnet_v2.data.pipeline import split_image_paths

    try:
        return split_image_paths(experiment, "val", CHECK_IMAGES)
    except TaoUserError as e:  # no validation records: the engine is still built, unchecked
        log.warning("no validation images to check the engine against FP32 on (%s)", e)
        return []


def _calibration_source(exported: dict, args, experiment, tmp: str) -> dict:
    """cal_data_file / cal_image_dir arguments of build_detectnet_engine for the export flags."""
    if exported["qat"] and not args.force_ptq:
        return {}  # the learned scales are the calibration
    if args.cal_cache_file and os.path.isfile(args.cal_cache_file):
        log.info("INT8: reusing the existing calibration cache %s", args.cal_cache_file)
        return {}
    if args.cal_data_file and (os.path.isfile(args.cal_data_file) or args.cal_image_dir):
        return {"cal_data_file": args.cal_data_file, "cal_image_dir": args.cal_image_dir}
    if args.cal_image_dir:
        return {"cal_image_dir": args.cal_image_dir}
    if experiment is None:
        raise TaoUserError(f"--data_type int8: --cal_data_file {args.cal_data_file} does not exist; pass "
                           "--cal_image_dir or -e SPEC to calibrate on the training data")  # fmt: skip
    # TAO's "training data loader" option: the calibration_tensorfile batches of the spec
    from tao_tf.detectnet_v2.tasks.calibration_tensorfile import write_calibration_tensorfile

    spec = type(experiment)()
    spec.CopyFrom(experiment)
    spec.training_config.batch_size_per_gpu = args.batch_size
    path = args.cal_data_file or os.path.join(tmp, "calibration.tensorfile")
    count = write_calibration_tensorfile(spec, path, args.batches, "train")
    if count < args.batches:
        raise TaoUserError(f"--batches {args.batches} x --batch_size {args.batch_size}: the training set gives only "
                           f"{count} full batches; lower --batches or --batch_size")  # fmt: skip
    log.info("INT8: calibrating on %d training batches of %d (no augmentation)%s", count, args.batch_size,
             f", written to {path}" if args.cal_data_file else "")  # fmt: skip
    return {"cal_data_file": path}
