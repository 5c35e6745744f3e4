"""The three engine tasks of DetectNet_v2, each `fn(argv) -> exit code` with TAO Deploy's flags.

gen_trt_engine  -m MODEL (.onnx / .etlt) [-k KEY] [-e SPEC] [--data_type fp32|fp16|int8]
                [--cal_image_dir DIR] [--cal_data_file TENSORFILE] [--cal_cache_file FILE]
                [--batch_size 1] [--batches 10] [--min/opt/max_batch_size 1] --engine_file FILE
                [--max_workspace_size GiB] [--force_ptq] [--backend auto|tensorrt|onnxruntime] [-r DIR]
    With -e and no calibration source, INT8 calibrates on the images of the spec's data sources
    (as TAO Deploy does); the spec also names the classes and the clustering of the FP32
    agreement check. Without -e the classes come from labels.txt beside the model when present.
evaluate        -e SPEC -m ENGINE -i IMAGE_DIR -l LABEL_DIR [-b BATCH] [-r DIR]
    KITTI images and labels (TAO Deploy's evaluate reads them, not the TFRecords: no TensorFlow
    here); ground truth is mapped with dataset_config.target_class_mapping and scaled to the
    network input, predictions are clustered with postprocessing_config, and scored with
    tao-core's DetectNet_v2 AP (evaluation_config). Writes <DIR>/results.json and status.json.
inference       -e INFER_SPEC [-m ENGINE] -i IMAGES -r DIR [-b BATCH]
    The inference spec's bbox_handler_config around the engine (-m, else
    inferencer_config.tensorrt_config.trt_engine); images_annotated/ and labels/ under DIR.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from tao_core.cli.guard import UserArgumentParser
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.results import Status, setup_task_logging, task_run

log = logging.getLogger("tao_deploy.detectnet_v2")
NETWORK = "detectnet_v2"


def _parser(task: str) -> UserArgumentParser:
    return UserArgumentParser(prog=f"{NETWORK} {task}")


def _results_dir(args, fallback: str) -> str:
    return args.results_dir or os.path.dirname(os.path.abspath(fallback))


# ---- gen_trt_engine ----------------------------------------------------------------------------


def gen_trt_engine(argv: list[str]) -> int:
    p = _parser("gen_trt_engine")
    p.add_argument("-m", "--model_path", required=True, help="DetectNet_v2 .onnx or .etlt")
    p.add_argument("-k", "--key", default=None, help="key of an .etlt model")
    p.add_argument("-e", "--experiment_spec", default=None, help="experiment spec (classes, calibration images)")
    p.add_argument("--data_type", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--cal_image_dir", default=None, help="folder of calibration images")
    p.add_argument("--cal_data_file", default=None, help="calibration tensorfile (written from --cal_image_dir if absent)")
    p.add_argument("--cal_cache_file", default=None, help="TensorRT calibration cache (reused when it exists)")
    p.add_argument("--engine_file", required=True, help="engine file to write (never overwritten)")
    p.add_argument("--min_batch_size", type=int, default=1)
    p.add_argument("--opt_batch_size", type=int, default=1)
    p.add_argument("--max_batch_size", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=1, help="calibration batch size")
    p.add_argument("--batches", type=int, default=10, help="number of calibration batches")
    p.add_argument("--max_workspace_size", type=float, default=2, help="builder workspace in GiB (default 2)")
    p.add_argument("-s", "--strict_type_constraints", action="store_true", help="(TensorRT < 10 flag; ignored)")
    p.add_argument("--force_ptq", action="store_true", help="calibrate a QAT model instead of using its scales")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-r", "--results_dir", default=None)
    args = p.parse_args(argv)
    results_dir = _results_dir(args, args.engine_file)
    setup_task_logging(results_dir, "gen_trt_engine", verbose=args.verbose)
    with task_run(results_dir, "gen_trt_engine", network=NETWORK) as status:
        from tao_deploy.detectnet_v2.engine import build_detectnet_engine
        from tao_deploy.engine.builder import record_agreement

        names, clustering, scale_offset, cal_dirs, check_dirs = _spec_settings(args.experiment_spec, args.model_path)
        if args.cal_image_dir:
            cal_dirs = [args.cal_image_dir]
        info = build_detectnet_engine(
            args.model_path, args.engine_file, args.data_type, key=args.key, cal_data_file=args.cal_data_file,
            cal_image_dir=cal_dirs, cal_cache_file=args.cal_cache_file, batch_size=args.batch_size,
            batches=args.batches, min_batch_size=args.min_batch_size, opt_batch_size=args.opt_batch_size,
            max_batch_size=args.max_batch_size, force_ptq=args.force_ptq, backend=args.backend,
            workspace_mib=int(args.max_workspace_size * 1024), class_names=names, clustering=clustering,
            bbox_scale_offset=scale_offset, verbose=args.verbose,
            check_images=_images_in(check_dirs) if args.data_type != "fp32" else [],
        )  # fmt: skip
        message = f"Built {info.precision.upper()} engine {info.path} with {info.backend} {info.backend_version}"
        log.info(message)
        status.write(Status.RUNNING, message)
        record_agreement(status, info)
    return 0


def _spec_settings(spec_path, model_path):
    """(class names, clustering params, (bbox scale, offset), calibration image dirs, validation
    image dirs) of the -e spec, or of labels.txt beside the model without one. The validation
    images (validation_data_source; a validation fold lives in TFRecords, which need TensorFlow)
    are where an FP16 / INT8 engine is checked against FP32 when calibration leaves none aside."""
    from tao_core.processing.detectnet import DEFAULT_OFFSET, DEFAULT_SCALE

    if spec_path:
        from tao_core.specs.detectnet_v2 import SPEC
        from tao_core.tasks import detectnet_v2 as dn

        experiment = SPEC.load("export", spec_path)
        ds = experiment.dataset_config
        dirs = [s.image_directory_path for s in ds.data_sources if s.image_directory_path]
        val = ds.validation_data_source.image_directory_path if ds.HasField("validation_data_source") else ""
        return (dn.class_names(experiment), dn.clustering_params(experiment), dn.bbox_scale_offset(experiment), dirs,
                [val] if val else [])  # fmt: skip
    labels = os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt")
    names = []
    if os.path.isfile(labels):
        with open(labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    return names, None, (DEFAULT_SCALE, DEFAULT_OFFSET), [], []


VALIDATION_FIELD = "dataset_config.validation_data_source.image_directory_path"


def _images_in(dirs: list[str]) -> list:
    """The validation images an FP16 / INT8 engine is checked on: a folder the spec names must
    exist and its images open (one clear error before the build, not a check silently skipped)."""
    from tao_deploy.engine.builder import CHECK_IMAGES
    from tao_deploy.engine.calibration import check_images_readable, find_images

    for d in dirs:
        if not os.path.isdir(d):
            raise TaoUserError(f"-e spec: {VALIDATION_FIELD} {d} is not a directory (its images are where the "
                               "FP16 / INT8 engine is checked against FP32)")  # fmt: skip
    paths = find_images(dirs)[1][:CHECK_IMAGES] if dirs else []
    check_images_readable(paths, f"{VALIDATION_FIELD}: image")
    return paths


# ---- evaluate ----------------------------------------------------------------------------------


def evaluate(argv: list[str]) -> int:
    p = _parser("evaluate")
    p.add_argument("-e", "--experiment_spec", required=True, help="the training experiment spec")
    p.add_argument("-m", "--model_path", required=True, help="the engine")
    p.add_argument("-i", "--image_dir", default=None, help="folder of the evaluation images")
    p.add_argument("-l", "--label_dir", default=None, help="folder of their KITTI labels (<image stem>.txt)")
    p.add_argument("-b", "--batch_size", type=int, default=None, help="default: training_config.batch_size_per_gpu")
    p.add_argument("-r", "--results_dir", default=None)
    args = p.parse_args(argv)
    if not args.image_dir or not args.label_dir:
        raise TaoUserError(f"{NETWORK} evaluate: pass -i IMAGE_DIR and -l LABEL_DIR (KITTI); the spec's TFRecords "
                           "need TensorFlow: evaluate them with `tao model detectnet_v2 evaluate -f tensorrt -m ENGINE`")
    results_dir = _results_dir(args, args.model_path)
    setup_task_logging(results_dir, "evaluate")
    with task_run(results_dir, "evaluate", network=NETWORK) as status:
        from tao_core.specs.detectnet_v2 import SPEC
        from tao_core.tasks import detectnet_v2 as dn
        from tao_deploy.detectnet_v2.engine import EnginePredictor

        experiment = SPEC.load("evaluate", args.experiment_spec)
        frames = kitti_frames(experiment, args.image_dir, args.label_dir)
        with EnginePredictor(args.model_path) as predict:
            _check_engine_matches(predict, experiment, args.model_path)
            batch = args.batch_size or experiment.training_config.batch_size_per_gpu or 8
            result = evaluate_frames(predict, experiment, frames, batch)
            result["engine"] = {"path": str(args.model_path), "precision": predict.engine.precision,
                                "backend": predict.engine.backend}  # fmt: skip
        log.info("\n%s", dn.report(result))
        status.write(Status.RUNNING, "Evaluation complete", kpi=dn.kpi(result))
        atomic_write_text(os.path.join(results_dir, "results.json"), json.dumps(result, indent=2))
    return 0


def _check_engine_matches(predict, experiment, where) -> None:
    from tao_core.tasks import detectnet_v2 as dn

    names, shape = dn.class_names(experiment), dn.input_shape(experiment)
    _check_engine_classes(predict, names, where, "cost_function_config.target_classes")
    if predict.class_names and list(predict.class_names) != names:
        raise TaoUserError(f"{where}: the engine was built for classes {predict.class_names}, the spec names {names}")
    if tuple(predict.input_chw) != tuple(shape):
        raise TaoUserError(f"{where}: the engine takes input {tuple(predict.input_chw)} (C, H, W), the spec's "
                           f"preprocessing gives {tuple(shape)}")  # fmt: skip


def _check_engine_classes(predict, names, where, named_by: str) -> None:
    from tao_deploy.detectnet_v2.engine import BBOX, COV, check_classes

    outputs = {o["name"]: tuple(o["shape"]) for o in predict.engine.metadata.get("output_specs", [])}
    if set(outputs) >= {COV, BBOX}:
        check_classes(names, outputs, str(where), named_by)


def kitti_frames(experiment, image_dir: str, label_dir: str) -> list[dict]:
    """[{frame_id, image_path, boxes [K, 4] in network pixels, classes}] of KITTI images + labels,
    classes mapped with target_class_mapping (unmapped objects dropped). Every problem is one error."""
    from tao_core.data.images import image_size, list_images
    from tao_core.data.kitti import normalize_mapping, read_kitti_labels
    from tao_core.tasks import detectnet_v2 as dn

    names = dn.class_names(experiment)
    mapping = normalize_mapping(dict(experiment.dataset_config.target_class_mapping),
                                "dataset_config.target_class_mapping") or {n.lower(): n for n in names}  # fmt: skip
    _, h, w = dn.input_shape(experiment)
    paths = list_images(image_dir, "-i/--image_dir")
    if not os.path.isdir(label_dir):
        raise TaoUserError(f"-l/--label_dir: {label_dir} is not a directory (expected the KITTI labels of "
                           f"{image_dir}, one <image stem>.txt each)")  # fmt: skip
    missing = [p for p in paths if not os.path.isfile(_label_of(p, label_dir))]
    if missing:
        raise TaoUserError(f"-l/--label_dir {label_dir}: no KITTI label for {len(missing)} image(s), e.g. "
                           f"{os.path.basename(missing[0])} (expected {_label_of(missing[0], label_dir)})")  # fmt: skip
    frames = []
    for path in paths:
        width, height = image_size(path)
        objs = [o for o in read_kitti_labels(_label_of(path, label_dir)) if o.type in mapping]
        scale = np.array([w / width, h / height, w / width, h / height])
        boxes = np.array([o.bbox for o in objs], np.float64).reshape(-1, 4) * scale
        boxes = np.clip(boxes, 0.0, [w, h, w, h])
        frames.append({"frame_id": os.path.splitext(os.path.basename(path))[0], "image_path": path,
                       "boxes": boxes, "classes": [mapping[o.type] for o in objs]})  # fmt: skip
    return frames


def _label_of(image_path: str, label_dir: str) -> str:
    return os.path.join(label_dir, os.path.splitext(os.path.basename(image_path))[0] + ".txt")


def evaluate_frames(predict, experiment, frames: list[dict], batch_size: int = 8) -> dict:
    """tao-core's DetectNet_v2 AP of `predict` (NCHW -> (cov, bbox)) on `kitti_frames` output."""
    from tao_core.data.images import load_image_rgb
    from tao_core.metrics.detectnet import evaluate_detections
    from tao_core.processing.detectnet import postprocess_detectnet
    from tao_core.tasks import detectnet_v2 as dn

    names = dn.class_names(experiment)
    c, h, w = dn.input_shape(experiment)
    scale, offset = dn.bbox_scale_offset(experiment)
    params = dn.clustering_params(experiment)
    gt, preds = {}, {}
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        images = np.stack([dn.preprocess_image(load_image_rgb(f["image_path"]), (h, w), c) for f in chunk])
        cov, bbox = predict(images)
        for f, dets in zip(chunk, postprocess_detectnet(cov, bbox, names, (h, w), params, scale, offset), strict=True):
            gt[f["frame_id"]] = [(n, b.tolist()) for n, b in zip(f["classes"], f["boxes"], strict=True)]
            preds[f["frame_id"]] = [(d.class_name, d.bbox.tolist(), float(d.confidence)) for d in dets]
    return evaluate_detections(gt, preds, names, **dn.metric_options(experiment))


# ---- inference ---------------------------------------------------------------------------------


def inference(argv: list[str]) -> int:
    p = _parser("inference")
    p.add_argument("-e", "--experiment_spec", required=True, help="inference spec (bbox_handler_config)")
    p.add_argument("-m", "--model_path", default=None, help="engine (default: inferencer_config.tensorrt_config.trt_engine)")
    p.add_argument("-i", "--image_dir", required=True, help="an image or a folder of images")
    p.add_argument("-r", "--results_dir", required=True, help="images_annotated/ and labels/ go here")
    p.add_argument("-b", "--batch_size", type=int, default=None)
    args = p.parse_args(argv)
    setup_task_logging(args.results_dir, "inference")
    with task_run(args.results_dir, "inference", network=NETWORK) as status:
        from tao_core.specs.detectnet_v2 import SPEC
        from tao_core.tasks import detectnet_v2 as dn
        from tao_deploy.detectnet_v2.engine import EnginePredictor

        spec = SPEC.load("inference", args.experiment_spec)
        engine = args.model_path or spec.inferencer_config.tensorrt_config.trt_engine
        if not engine:
            raise TaoUserError(f"{NETWORK} inference: pass -m ENGINE or set inferencer_config.tensorrt_config.trt_engine")
        if args.batch_size:
            spec.inferencer_config.batch_size = args.batch_size
        with EnginePredictor(engine) as predict:
            shape = dn.inference_input_shape(spec)
            if tuple(predict.input_chw) != shape:
                raise TaoUserError(f"{engine}: the engine takes input {tuple(predict.input_chw)} (C, H, W); "
                                   f"inferencer_config asks for {shape}")  # fmt: skip
            classes = list(spec.inferencer_config.target_classes) or predict.class_names
            _check_engine_classes(predict, classes, engine, "inferencer_config.target_classes")
            count = dn.run_inference(spec, args.image_dir, args.results_dir, predict, classes)
        status.write(Status.RUNNING, f"Inference on {count} images written to {args.results_dir}")
    return 0
