"""Task implementations shared by DINO and Deformable DETR (evaluate, inference, export, convert).

Each takes `(network, cfg, ctx)` (convert: `(cfg, ctx)`) with cfg the loaded spec and ctx the
tao_core.cli.network.TaskContext; the per-network `tasks/<task>.py` files only name the network.
"""
