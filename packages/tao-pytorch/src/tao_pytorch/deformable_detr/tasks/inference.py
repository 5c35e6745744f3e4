"""`deformable_detr inference`: see tao_pytorch.detr.tasks.inference."""

from tao_pytorch.deformable_detr.network import NETWORK
from tao_pytorch.detr.tasks.inference import run_inference


def run(cfg, ctx):
    return run_inference(NETWORK, cfg, ctx)
