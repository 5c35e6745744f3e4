"""Run by test_distributed.py in a fresh process: the logical-device split must precede TensorFlow's start.

    python two_device_training.py SPEC RESULTS KEY [--use_amp]

Splits the CPU into two logical devices, trains with MirroredStrategy over both (the code path
of `--gpus 2`, tf.distribute all-reducing the gradients) and prints one JSON line.
"""

import json
import logging
import sys

import tao_tf  # (first: TF_USE_LEGACY_KERAS before TensorFlow)

assert tao_tf
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tao_core.specs.detectnet_v2 import SPEC  # noqa: E402
from tao_tf.detectnet_v2.distribution import mirrored_strategy  # noqa: E402
from tao_tf.detectnet_v2.tasks.train import train  # noqa: E402

spec, results, key = sys.argv[1:4]
strategy = mirrored_strategy([d.name for d in tf.config.list_logical_devices("CPU")])
STEPS = []


class _Steps(logging.Handler):
    def emit(self, record):  # "Training %s on %d frames: %d epochs of %d steps, ..."
        if record.getMessage().startswith("Training "):
            STEPS.append(record.args[3])


logging.getLogger("tao_tf.detectnet_v2.train").addHandler(_Steps())
logging.getLogger("tao_tf.detectnet_v2.train").setLevel(logging.INFO)
final = train(SPEC.load("train", spec), results, key, strategy=strategy, use_amp="--use_amp" in sys.argv[4:])
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "final": final, "steps_per_epoch": STEPS[-1]}))
