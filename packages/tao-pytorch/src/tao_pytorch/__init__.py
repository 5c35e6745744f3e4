"""tao-pytorch: DINO, Deformable DETR (and later OneFormer) in plain PyTorch.

Layout (see DESIGN.md): `backbones/` (ResNets), `common/` (checkpoints, console, and
`training`: the Lightning training every network shares), `detr/` (the pieces the DETR-family
networks share: box ops, position encoding, multi-scale deformable attention, transformer,
matcher, criterion, post-processing, tasks), and one folder per network with its `model/`,
`tasks/` and `network.py` (its builders, passed to the shared code).
"""

__version__ = "0.1.0"
