"""tao-pytorch: DINO, Deformable DETR (and later OneFormer) in plain PyTorch.

Layout (see DESIGN.md): `backbones/` (ResNets), `detr/` (the pieces DINO and Deformable DETR
share: box ops, position encoding, multi-scale deformable attention, transformer, matcher,
criterion, post-processing), and one folder per network with its `model/`.
"""

__version__ = "0.1.0"
