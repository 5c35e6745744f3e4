"""`dino train -e spec.yaml`: train DINO (see tao_pytorch.detr.trainer)."""

from tao_pytorch.detr.trainer import run_training


def run(cfg, ctx):
    run_training("dino", cfg, ctx)
