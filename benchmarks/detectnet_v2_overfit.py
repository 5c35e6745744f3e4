"""Overfit check of DetectNet_v2 (tao-tf): can the real train task memorise a few images?

The first --images raccoon training images are converted with `dataset_convert` (all in the
training fold), a small resnet is trained with `detectnet_v2 train` (augmentation off, the
spec's soft-start-annealing LR with --lr as its maximum), and `detectnet_v2 evaluate
--use_training_set` computes the AP on those same images (IoU 0.5, INTEGRATE mode, DBSCAN
clustering as in the spec).

Measured (shared 2-core CPU, 8 images, resnet10 128x96, lr 2e-3): with the defaults (240 steps,
--annealing 0.3, 350 s) the loss reaches 0.005 but the train-set AP is 0.0, and so it is with 120
steps. The weights are fine: with each BatchNormalization's moving statistics re-estimated on
the 8 images (weights untouched) the same model scores AP 1.0. Evaluation runs BN in inference
mode on moving averages (Keras momentum 0.99, as in TAO) that start at mean 0 / variance 1; the
inputs are in [0, 1], so the true feature variances are small and the leftover 0.99**steps of
the initial 1.0 dominates (moving/true variance 4.6-8.8x after 240 steps). The eval-mode
coverage then peaks at 0.4, TAO's DBSCAN (a core point needs a summed coverage >= 1 within IoU
1 - dbscan_eps) finds no cluster and the AP is 0. Several hundred more steps are needed before
the averages catch up; long real trainings do not have this problem. --no-batch-norm underfits
in 120 steps (loss 0.014, AP 0).

    /work/venv-tf/bin/python benchmarks/detectnet_v2_overfit.py [--images 8 --epochs 120 --lr 2e-3]
    /work/venv-tf/bin/python benchmarks/detectnet_v2_overfit.py --epochs 400   # more steps for the BN averages (not yet measured)

Prints one JSON object (mAP, train seconds, last-epoch loss, settings, load average) on stdout.
The machine may be shared: wall times come with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packages" / "tao-tf" / "tests"))  # the tests' tiny-dataset and spec helpers

from conftest import experiment_spec, export_spec, make_kitti  # noqa: E402

import tao_tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tao_tf.detectnet_v2.cli import CLI  # noqa: E402

NO_AUGMENTATION = {
    "hflip_probability: 0.5 zoom_min: 0.9 zoom_max: 1.1 translate_max_x: 4.0":
        "hflip_probability: 0.0 zoom_min: 1.0 zoom_max: 1.0 translate_max_x: 0.0",
    "translate_max_y: 4.0": "translate_max_y: 0.0",
    "hue_rotation_max: 25.0 saturation_shift_max: 0.2 contrast_scale_max: 0.1":
        "hue_rotation_max: 0.0 saturation_shift_max: 0.0 contrast_scale_max: 0.0",
}  # fmt: skip


def overfit_spec(tfrecords: str, root: Path, args) -> str:
    text = experiment_spec(tfrecords, root, width=args.width, height=args.height, epochs=args.epochs,
                           batch=args.batch, num_layers=args.layers, first_validation=args.epochs,
                           checkpoint_interval=args.epochs)  # fmt: skip
    for old, new in NO_AUGMENTATION.items():
        if old not in text:
            raise RuntimeError(f"tests' experiment_spec changed: {old!r} not found")
        text = text.replace(old, new)
    text = text.replace("max_learning_rate: 5e-4", f"max_learning_rate: {args.lr}")
    text = text.replace("annealing: 0.7", f"annealing: {args.annealing}")
    return text.replace("use_batch_norm: true", f"use_batch_norm: {str(not args.no_batch_norm).lower()}")


def last_loss(status_file: Path) -> float | None:
    lines = [json.loads(x) for x in status_file.read_text().splitlines() if x.strip()]
    losses = [x["kpi"]["loss"] for x in lines if x.get("status") == "RUNNING" and "loss" in x.get("kpi", {})]
    return losses[-1] if losses else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--annealing", type=float, default=0.3, help="soft_start_annealing_schedule.annealing")
    p.add_argument("--no-batch-norm", action="store_true", help="use_batch_norm: false (underfits in 120 steps)")
    p.add_argument("--workdir", help="keep the run here instead of a temporary directory")
    args = p.parse_args()

    # the tasks print their progress bars on stdout; this script's stdout is the JSON alone
    with tempfile.TemporaryDirectory() as tmp_dir, contextlib.redirect_stdout(sys.stderr):
        tmp = Path(args.workdir or tmp_dir)
        root = make_kitti(tmp / "data", args.images)
        (tmp / "convert.txt").write_text(export_spec(root, shards=1, val_split=0.0001))
        CLI.run("dataset_convert", ["-d", str(tmp / "convert.txt"), "-o", str(tmp / "tfr" / "rac")])
        spec, results = tmp / "spec.txt", tmp / "results"
        spec.write_text(overfit_spec(f"{tmp}/tfr/rac*", root, args))
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        CLI.run("train", ["-e", str(spec), "-r", str(results), "-k", "overfit"])
        train_s = time.monotonic() - start
        CLI.run("evaluate", ["-e", str(spec), "-m", str(results / "weights" / "model.tlt"), "-k", "overfit",
                             "--use_training_set", "-r", str(results)])  # fmt: skip
        metrics = json.loads((results / "evaluate" / "results.json").read_text())
        out = {
            "train_set_mAP": metrics["mAP"],
            "num_ground_truth": metrics["num_ground_truth"],
            "train_s": round(train_s, 1),
            "steps": args.epochs * -(-args.images // args.batch),
            "last_epoch_loss": last_loss(results / "train" / "status.json"),
            "config": vars(args),
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
