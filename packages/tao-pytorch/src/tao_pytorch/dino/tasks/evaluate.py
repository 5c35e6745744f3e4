"""`dino evaluate`: see tao_pytorch.detr.tasks.evaluate."""

from tao_pytorch.detr.tasks.evaluate import run_evaluate
from tao_pytorch.dino.network import NETWORK


def run(cfg, ctx):
    return run_evaluate(NETWORK, cfg, ctx)
