"""`dino convert`: KITTI folders -> sharded COCO json (tao_core.data.kitti_to_coco)."""

from tao_pytorch.detr.tasks.convert import run_convert


def run(cfg, ctx):
    return run_convert(cfg, ctx)
