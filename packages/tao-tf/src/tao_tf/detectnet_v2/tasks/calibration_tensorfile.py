"""`detectnet_v2 calibration_tensorfile -e SPEC -o OUT -m MAX_BATCHES [--use_validation_set]`.

Writes preprocessed, non-augmented batches (float32 [batch_size_per_gpu, C, H, W], RGB in
[0, 1], exactly what the network is fed) into TAO's tensorfile layout with tao-core's writer,
for INT8 calibration (`--cal_data_file`). -m -1 writes every full batch; a last partial batch
is dropped so every record has the same shape, as TAO's tensorfile requires.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.data.tensorfile import TensorFileWriter
from tao_core.errors import TaoUserError
from tao_core.results import Status, setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC

log = logging.getLogger("tao_tf.detectnet_v2.calibration_tensorfile")


def main(argv: list[str]) -> int:
    args = parse_args("calibration_tensorfile", argv)
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(args.output_path))
    setup_task_logging(results_dir, "calibration_tensorfile")
    with task_run(results_dir, "calibration_tensorfile", network="detectnet_v2") as status:
        experiment = SPEC.load("calibration_tensorfile", args.experiment_spec_file)
        count = write_calibration_tensorfile(experiment, args.output_path, args.max_batches,
                                             "val" if args.use_validation_set else "train")  # fmt: skip
        status.write(Status.RUNNING, f"Wrote {count} batches to {args.output_path}")
    return 0


def write_calibration_tensorfile(experiment, output: str, max_batches: int = -1, split: str = "train") -> int:
    from tao_tf.detectnet_v2.data.pipeline import numpy_frames

    batch_size = experiment.training_config.batch_size_per_gpu or 32
    written = 0
    with TensorFileWriter(output) as writer:
        batch = []
        for frame in numpy_frames(experiment, split):
            batch.append(frame["image"].transpose(2, 0, 1).astype(np.float32))
            if len(batch) == batch_size:
                writer.write(np.stack(batch))
                written += 1
                batch = []
                if written == max_batches:
                    break
        if not written:  # raised inside the writer: nothing is left at `output`
            raise TaoUserError(f"calibration_tensorfile: fewer frames than one batch of {batch_size} in the {split} "
                               "set; lower training_config.batch_size_per_gpu")  # fmt: skip
    log.info("Wrote %d batches of %d images to %s", written, batch_size, output)
    return written
