"""`deformable_detr evaluate`: see tao_pytorch.detr.tasks.evaluate."""

from tao_pytorch.deformable_detr.network import NETWORK
from tao_pytorch.detr.tasks.evaluate import run_evaluate


def run(cfg, ctx):
    return run_evaluate(NETWORK, cfg, ctx)
