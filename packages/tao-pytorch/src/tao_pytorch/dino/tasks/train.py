"""`dino train -e spec.yaml`: see tao_pytorch.detr.trainer (and tao_pytorch.common.training)."""

from tao_pytorch.detr.trainer import run_training
from tao_pytorch.dino.network import NETWORK


def run(cfg, ctx):
    run_training(NETWORK, cfg, ctx)
