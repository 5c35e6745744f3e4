"""`deformable_detr train -e spec.yaml`: see tao_pytorch.detr.trainer (and tao_pytorch.common.training)."""

from tao_pytorch.deformable_detr.network import NETWORK
from tao_pytorch.detr.trainer import run_training


def run(cfg, ctx):
    run_training(NETWORK, cfg, ctx)
