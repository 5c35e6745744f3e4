"""`detectnet_v2 prune -m MODEL -o OUT -k KEY [-n max|L2] [-eq ...] [-pg 8] [-pth 0.1] [-nf 16] [-el L ...]`.

Filter pruning (tao_tf.detectnet_v2.model.prune). Logs, per convolution, how many filters were
kept of how many with the normalised-norm threshold and the smallest kept norm, and the
parameter count before / after (also in status.json). The pruned model keeps the training
metadata (classes, input shape) and retrains with `model_config { load_graph: true
pretrained_model_file: OUT }`.
"""

from __future__ import annotations

import logging
import os

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.results import Status, setup_task_logging, task_run

log = logging.getLogger("tao_tf.detectnet_v2.prune")


def main(argv: list[str]) -> int:
    args = parse_args("prune", argv)
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(args.output_file))
    setup_task_logging(results_dir, "prune")
    with task_run(results_dir, "prune", network="detectnet_v2") as status:
        before, after = prune_file(args.pretrained_model, args.output_file, args.key, args.pruning_threshold,
                                   args.normalizer, args.equalization_criterion, args.pruning_granularity,
                                   args.min_num_filters, args.excluded_layers)  # fmt: skip
        status.write(Status.RUNNING, "Pruning complete",
                     kpi={"parameters_before": before, "parameters_after": after})  # fmt: skip
    return 0


def prune_file(model_path, output, key, threshold=0.1, normalizer="max", equalization="union", granularity=8,
               min_filters=16, excluded=()) -> tuple[int, int]:  # fmt: skip
    from tao_tf.detectnet_v2.model.io import load_model, save_model
    from tao_tf.detectnet_v2.model.prune import apply_pruning, plan_pruning, report_text

    model, meta, _ = load_model(model_path, key)
    if meta.get("qat"):
        from tao_core.errors import TaoUserError

        raise TaoUserError(f"{model_path}: a QAT model cannot be pruned; prune the float model, then retrain "
                           "the pruned model with training_config.enable_qat: true")  # fmt: skip
    keep, reports = plan_pruning(model, threshold, normalizer, equalization, granularity, min_filters, excluded)
    pruned = apply_pruning(model, keep)
    before, after = model.count_params(), pruned.count_params()
    log.info("Pruning %s (threshold %g, normalizer %s, equalization %s, granularity %d, min filters %d):\n%s",
             model_path, threshold, normalizer, equalization, granularity, min_filters,
             report_text(reports, before, after))  # fmt: skip
    meta = {**meta, "pruned_from": os.path.basename(model_path), "epoch": 0}
    save_model(pruned, output, key, meta)
    log.info("Pruned model written to %s", output)
    return before, after
