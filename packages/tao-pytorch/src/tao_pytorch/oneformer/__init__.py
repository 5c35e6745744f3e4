"""OneFormer (seed 004): task-conditioned universal segmentation (semantic, instance, panoptic)."""
