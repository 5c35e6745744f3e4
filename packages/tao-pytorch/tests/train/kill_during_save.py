"""Train with `dino train` and SIGKILL this process halfway through writing the epoch-1 checkpoint.

    python kill_during_save.py SPEC [overrides...]

Used by test_train_resume.py: what a kill leaves behind must resume cleanly.
"""

import os
import signal
import sys

import tao_pytorch.common.checkpoint as checkpoint
from tao_core.cli.network import YamlNetworkCli
from tao_core.io.atomic import atomic_write

_real_write = checkpoint.atomic_write_bytes


def _write_then_die(path, data, overwrite=True):
    if "model_epoch_001" not in os.fspath(path):
        return _real_write(path, data, overwrite)
    with atomic_write(path, "wb", overwrite=overwrite) as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    checkpoint.atomic_write_bytes = _write_then_die
    cli = YamlNetworkCli("dino", {"train": "tao_pytorch.dino.tasks.train:run"})
    sys.exit(cli.run("train", ["-e", sys.argv[1], *sys.argv[2:]]))
