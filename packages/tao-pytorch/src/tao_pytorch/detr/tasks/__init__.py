"""Task implementations shared by the DETR-family networks (evaluate, inference, export, convert).

Each takes `(network, cfg, ctx)` (convert: `(cfg, ctx)`) with network the network's
tao_pytorch.detr.network.DetrNetwork, cfg the loaded spec and ctx the
tao_core.cli.network.TaskContext; the per-network `tasks/<task>.py` files only pass their NETWORK.
"""
