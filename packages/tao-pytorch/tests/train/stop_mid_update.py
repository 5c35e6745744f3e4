"""Train with `dino train`; in the 5th optimizer step, after the gradients and before the weights
change, send this process SIGTERM and take longer than the grace period to finish the update, as
a step slower than TAO_STOP_GRACE_S would.

    python stop_mid_update.py SPEC [overrides...]

Used by test_faults_train.py: a stop that lands inside an update must not be saved as a checkpoint.
"""

import os
import signal
import sys
import time

import torch

from tao_core.cli.network import YamlNetworkCli

_real_step = torch.optim.AdamW.step
_calls = 0


def _slow_step(self, closure=None):
    global _calls
    _calls += 1
    with torch.enable_grad():
        loss = closure() if closure is not None else None  # forward + backward, as the real step does first
    if _calls == 5:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the grace period runs out here, inside the update
    _real_step(self)
    return loss


if __name__ == "__main__":
    torch.optim.AdamW.step = _slow_step
    cli = YamlNetworkCli("dino", {"train": "tao_pytorch.dino.tasks.train:run"})
    sys.exit(cli.main(["train", "-e", sys.argv[1], *sys.argv[2:]]))
