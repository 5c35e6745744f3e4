"""`detectnet_v2 evaluate -e SPEC -m MODEL [-k KEY] [--use_training_set] [-r DIR]`.

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
        if args.framework == "tensorrt":
            raise TaoUserError("detectnet_v2 evaluate -f tensorrt: engines are evaluated by "
                               "`tao deploy detectnet_v2 evaluate` (tao-deploy), not by tao-tf")  # fmt: skip
        result = evaluate_model_file(experiment, args.model, args.key, "train" if args.use_training_set else "val")
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


def check_model_matches(model, meta: dict, classes: list[str], shape, path: str) -> None:
    """The spec's classes and input size must be the model's (clear error before any compute)."""
    got_classes = meta.get("classes")
    if got_classes is not None and list(got_classes) != list(classes):
        raise TaoUserError(f"{path}: the model was trained for classes {got_classes}, the spec names {classes}")
    got = tuple(model.input_shape[1:])
    if got != tuple(shape):
        raise TaoUserError(f"{path}: the model takes input {got} (C, H, W), the spec's preprocessing gives "
                           f"{tuple(shape)}")  # fmt: skip
