"""`deformable_detr export`: see tao_pytorch.detr.tasks.export."""

from tao_pytorch.deformable_detr.network import NETWORK
from tao_pytorch.detr.tasks.export import run_export


def run(cfg, ctx):
    return run_export(NETWORK, cfg, ctx)
