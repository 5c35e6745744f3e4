"""`deformable_detr train -e spec.yaml`: train Deformable DETR (see tao_pytorch.detr.trainer)."""

from tao_pytorch.detr.trainer import run_training


def run(cfg, ctx):
    run_training("deformable_detr", cfg, ctx)
