"""Train with `dino train`; when the val loader is built (after the training epoch), overwrite one
val image with bytes that are no image, as a disk changing under a running job would.

    python break_val_image.py SPEC IMAGE [overrides...]

Used by test_faults_train.py: the trained steps must survive the validation failure.
"""

import sys

import tao_pytorch.detr.trainer as trainer
from tao_core.cli.network import YamlNetworkCli

_real_val_dataloader = trainer._TrainingModule.val_dataloader


def _val_dataloader_then_break(self):
    with open(sys.argv[2], "wb") as f:
        f.write(b"\x00" * 64)
    return _real_val_dataloader(self)


if __name__ == "__main__":
    trainer._TrainingModule.val_dataloader = _val_dataloader_then_break
    cli = YamlNetworkCli("dino", {"train": "tao_pytorch.dino.tasks.train:run"})
    sys.exit(cli.main(["train", "-e", sys.argv[1], *sys.argv[3:]]))
