"""`dino inference`: see tao_pytorch.detr.tasks.inference."""

from tao_pytorch.detr.tasks.inference import run_inference
from tao_pytorch.dino.network import NETWORK


def run(cfg, ctx):
    return run_inference(NETWORK, cfg, ctx)
