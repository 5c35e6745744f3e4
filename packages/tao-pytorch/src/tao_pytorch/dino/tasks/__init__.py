"""Tasks of the dino command: thin entry points over tao_pytorch.detr.tasks."""
