"""`detectnet_v2 evaluate -e SPEC -m MODEL [-k KEY] [--use_training_set] [-f tlt|tensorrt] [-r DIR]`.

MODEL is a .tlt model (-f tlt), or an engine (-f tensorrt, the default for non-.tlt files) that
tao-deploy runs; both go through the same frames, clustering and AP.

Runs the model on the validation fold (or validation_data_source; the training frames with
--use_training_set), clusters with postprocessing_config and scores with tao-core's
DetectNet_v2 AP (evaluation_config). Prints TAO's summary and writes it to
`<results_dir>/evaluate/status.json` (kpi) and `<results_dir>/evaluate/results.json`.
"""

from __future__ import annotations

import json
import logging
import os

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.results import Status, setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC

log = logging.getLogger("tao_tf.detectnet_v2.evaluate")


def main(argv: list[str]) -> int:
    args = parse_args("evaluate", argv)
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(args.model))
    setup_task_logging(results_dir, "evaluate")
    with task_run(results_dir, "evaluate", network="detectnet_v2") as status:
        experiment = SPEC.load("evaluate", args.experiment_spec_file)
        split = "train" if args.use_training_set else "val"
        if args.framework == "tensorrt":
            result = evaluate_engine_file(experiment, args.model, split)
        else:
            result = evaluate_model_file(experiment, args.model, args.key, split)
        from tao_tf.detectnet_v2 import evaluation

        log.info("\n%s", evaluation.report(result))
        status.write(Status.RUNNING, "Evaluation complete", kpi=evaluation.kpi(result))
        atomic_write_text(os.path.join(results_dir, "evaluate", "results.json"), json.dumps(result, indent=2))
    return 0


def evaluate_model_file(experiment, model_path: str, key: str | None, split: str = "val") -> dict:
    from tao_tf.detectnet_v2 import evaluation
    from tao_tf.detectnet_v2.data.pipeline import class_names, input_shape
    from tao_tf.detectnet_v2.model.io import load_model

    model, meta, _ = load_model(model_path, key)
    check_model_matches(model, meta, class_names(experiment), input_shape(experiment), model_path)
    batch = experiment.training_config.batch_size_per_gpu or 8
    return evaluation.evaluate(evaluation.keras_predictor(model), experiment, split, batch)


def evaluate_engine_file(experiment, engine_path: str, split: str = "val") -> dict:
    """The same evaluation of an engine built by export --engine_file / tao deploy gen_trt_engine
    (tao-deploy runs it: TensorRT, or ONNX Runtime where TensorRT cannot run)."""
    from tao_tf.detectnet_v2 import evaluation
    from tao_tf.detectnet_v2.data.pipeline import class_names, input_shape

    try:
        from tao_deploy.detectnet_v2.engine import EnginePredictor
    except ImportError as e:
        raise TaoUserError(f"evaluate -f tensorrt needs tao-deploy ({e}); pip install tao-deploy") from None
    with EnginePredictor(engine_path) as predict:
        names = class_names(experiment)
        if predict.class_names and list(predict.class_names) != names:
            raise TaoUserError(f"{engine_path}: the engine was built for classes {predict.class_names}, the spec "
                               f"names {names}")  # fmt: skip
        if tuple(predict.input_chw) != tuple(input_shape(experiment)):
            raise TaoUserError(f"{engine_path}: the engine takes input {tuple(predict.input_chw)} (C, H, W), the "
                               f"spec's preprocessing gives {tuple(input_shape(experiment))}")  # fmt: skip
        log.info("evaluating the %s %s engine %s", predict.engine.precision.upper(), predict.engine.backend,
                 engine_path)
        batch = experiment.training_config.batch_size_per_gpu or 8
        result = evaluation.evaluate(predict, experiment, split, batch)
        result["engine"] = {"path": str(engine_path), "precision": predict.engine.precision,
                            "backend": predict.engine.backend}  # fmt: skip
    return result


def check_model_matches(model, meta: dict, classes: list[str], shape, path: str) -> None:
    """The spec's classes and input size must be the model's (clear error before any compute)."""
    got_classes = meta.get("classes")
    if got_classes is not None and list(got_classes) != list(classes):
        raise TaoUserError(f"{path}: the model was trained for classes {got_classes}, the spec names {classes}")
    got = tuple(model.input_shape[1:])
    if got != tuple(shape):
        raise TaoUserError(f"{path}: the model takes input {got} (C, H, W), the spec's preprocessing gives "
                           f"{tuple(shape)}")  # fmt: skip
