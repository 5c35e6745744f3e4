"""Tasks of the dino command: thin entry points passing DINO's NETWORK to tao_pytorch.detr.tasks."""
