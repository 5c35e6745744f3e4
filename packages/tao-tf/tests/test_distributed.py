"""--gpus N's code path without a GPU: MirroredStrategy over two logical CPU devices (with --use_amp's
mixed precision, bfloat16 on a CPU) trains, checkpoints float32, and the checkpoint evaluates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import experiment_spec, export_spec, make_kitti

from tao_core.errors import TaoUserError
from tao_tf.detectnet_v2.cli import CLI
from tao_tf.detectnet_v2.distribution import training_strategy

RUNNER = Path(__file__).with_name("two_device_training.py")


def _run(spec, results, *extra):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, str(RUNNER), str(spec), str(results), "k", *extra], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_replicas_with_amp_train_and_evaluate(tmp_path):
    root = make_kitti(tmp_path / "data", 8)
    (tmp_path / "convert.txt").write_text(export_spec(root, shards=1, val_split=25))
    CLI.run("dataset_convert", ["-d", str(tmp_path / "convert.txt"), "-o", str(tmp_path / "tfr" / "rac")])
    spec, results = tmp_path / "spec.txt", tmp_path / "results"
    # 6 training frames, batch_size_per_gpu 2 x 2 replicas: 2 steps of 4 frames per epoch
    spec.write_text(experiment_spec(f"{tmp_path}/tfr/rac*", root, width=64, height=64, epochs=1, batch=2))
    out = _run(spec, results, "--use_amp")
    assert out["replicas"] == 2 and out["steps_per_epoch"] == 2
    from tao_tf.detectnet_v2.model.io import load_model

    model, meta, _ = load_model(out["final"], "k")
    _, _, optimizer_state = load_model(str(results / "weights" / "model_epoch_001.tlt"), "k")
    assert meta["epoch"] == 1 and len(optimizer_state) > 1  # a resumable checkpoint
    assert {layer.dtype_policy.name for layer in model.layers if layer.weights} == {"float32"}
    assert CLI.run("evaluate", ["-e", str(spec), "-m", out["final"], "-k", "k", "-r", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "evaluate" / "results.json").read_text())
    assert result["num_ground_truth"] == {"raccoon": 2} and 0.0 <= result["mAP"] <= 1.0


def test_gpus_beyond_the_visible_ones_is_a_clear_error():
    with pytest.raises(TaoUserError, match="--gpus 2 / --gpu_index \\[0, 1\\]: only 0 GPU"):
        training_strategy(2)
