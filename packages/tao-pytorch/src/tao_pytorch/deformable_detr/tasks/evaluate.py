"""`deformable_detr evaluate`: see tao_pytorch.detr.tasks.evaluate."""

from tao_pytorch.detr.tasks.evaluate import run_evaluate


def run(cfg, ctx):
    return run_evaluate("deformable_detr", cfg, ctx)
