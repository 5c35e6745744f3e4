"""`tao model detectnet_v2 <task>` and the `detectnet_v2 <task>` console script.

Each task keeps TAO's argparse flags (tao_core.cli.detectnet_v2_args) and is imported only
when run, so `tao --help` never loads TensorFlow.
"""

from tao_core.cli.network import ArgparseNetworkCli

TASKS = {
    "dataset_convert": "tao_tf.detectnet_v2.tasks.dataset_convert:main",
    "train": "tao_tf.detectnet_v2.tasks.train:main",
    "evaluate": "tao_tf.detectnet_v2.tasks.evaluate:main",
    "inference": "tao_tf.detectnet_v2.tasks.inference:main",
    "prune": "tao_tf.detectnet_v2.tasks.prune:main",
    "calibration_tensorfile": "tao_tf.detectnet_v2.tasks.calibration_tensorfile:main",
    "export": "tao_tf.detectnet_v2.tasks.export:main",
}

CLI = ArgparseNetworkCli("detectnet_v2", TASKS, "DetectNet_v2 (TensorFlow 2, tf_keras)")


def main(argv: list[str] | None = None) -> None:
    CLI.main(argv)
