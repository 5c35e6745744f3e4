"""What every PyTorch network shares: checkpoints, task wiring, Lightning helpers."""
