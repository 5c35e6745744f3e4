"""Tasks of the deformable_detr command: thin entry points over tao_pytorch.detr.tasks."""
