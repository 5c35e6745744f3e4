"""`dino train` with train.num_gpus=2: on a CPU-only machine, 2 processes under Lightning DDP (gloo).

    python ddp_train.py SPEC [overrides...]

Lightning re-launches this script for rank 1, hence the __main__ guard. Used by test_train_ddp.py.
"""

import sys

from tao_core.cli.network import YamlNetworkCli

if __name__ == "__main__":
    cli = YamlNetworkCli("dino", {"train": "tao_pytorch.dino.tasks.train:run"})
    sys.exit(cli.run("train", ["-e", sys.argv[1], "train.num_gpus=2", *sys.argv[2:]]))
