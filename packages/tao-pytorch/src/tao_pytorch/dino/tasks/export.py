"""`dino export`: see tao_pytorch.detr.tasks.export."""

from tao_pytorch.detr.tasks.export import run_export
from tao_pytorch.dino.network import NETWORK


def run(cfg, ctx):
    return run_export(NETWORK, cfg, ctx)
