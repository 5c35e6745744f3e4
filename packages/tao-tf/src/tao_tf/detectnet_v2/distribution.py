"""Devices and precision of a DetectNet_v2 training run (`--gpus`, `--gpu_index`, `--use_amp`).

- `training_strategy(gpus, gpu_index)`: tf.distribute.MultiWorkerMirroredStrategy when TF_CONFIG
  describes a cluster of several workers (one process per node, each with its GPUs), else
  MirroredStrategy over the chosen GPUs when more than one is asked for, else TensorFlow's
  default strategy (one device). `batch_size_per_gpu` stays per device, as in TAO: the global
  batch is batch_size_per_gpu x replicas and an epoch has fewer steps.
- `amp_policy()`: the Keras mixed-precision policy of `--use_amp`: float16 compute on a GPU (with
  dynamic loss scaling), bfloat16 on a CPU (no float16 convolution kernels there). Variables,
  the two heads and the loss stay float32 (build.HEAD_LAYERS), and models are saved float32.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
import tf_keras as keras

from tao_core.errors import TaoUserError

log = logging.getLogger("tao_tf.detectnet_v2.train")


def _cluster() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except json.JSONDecodeError as e:
        raise TaoUserError(f"TF_CONFIG: not valid JSON ({e})") from None


def training_strategy(gpus: int = 1, gpu_index: list[int] | None = None):
    """The tf.distribute strategy for --gpus / --gpu_index and TF_CONFIG (see the module docstring)."""
    cluster = _cluster()
    if sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log.info("Multi-worker training: %d replicas in all", strategy.num_replicas_in_sync)
        return strategy
    if gpus <= 1 and not gpu_index:
        return tf.distribute.get_strategy()
    found = tf.config.list_logical_devices("GPU")
    wanted = list(gpu_index) if gpu_index else list(range(gpus))
    if gpu_index and len(gpu_index) != gpus and gpus > 1:
        raise TaoUserError(f"--gpu_index {gpu_index} names {len(gpu_index)} GPUs but --gpus is {gpus}")
    missing = [i for i in wanted if i >= len(found)]
    if missing:
        raise TaoUserError(f"--gpus {len(wanted)} / --gpu_index {wanted}: only {len(found)} GPU(s) visible to "
                           f"TensorFlow (no GPU index {missing[0]})")  # fmt: skip
    if len(wanted) == 1:
        return tf.distribute.OneDeviceStrategy(found[wanted[0]].name)
    return mirrored_strategy([found[i].name for i in wanted])


def mirrored_strategy(devices: list[str]):
    """MirroredStrategy over `devices` (names of logical devices: GPUs, or CPUs in tests)."""
    strategy = tf.distribute.MirroredStrategy(devices)
    log.info("Data-parallel training on %d devices: %s", strategy.num_replicas_in_sync, ", ".join(devices))
    return strategy


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints, validation and status (worker 0 / the chief of a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in _cluster()


def amp_policy() -> str:
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def with_policy(model, policy: str, keep_float32=()):
    """A copy of `model` whose layers compute under `policy` (those in keep_float32 stay float32), same weights."""
    from tao_tf.detectnet_v2.model.build import CUSTOM_OBJECTS

    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":  # the input tensor stays float32; the first layer casts it
            continue
        layer["config"]["dtype"] = "float32" if layer["name"] in keep_float32 else policy
    copy = keras.Model.from_config(config, custom_objects=CUSTOM_OBJECTS)
    copy.set_weights(model.get_weights())
    return copy
