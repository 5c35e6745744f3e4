"""Backbones for the DETR family.

`build_backbone_body(name, ...)` returns a trunk whose `forward(images)` gives a list of feature
maps and whose `num_channels` / `strides` describe them: ResNets (`resnet.py`), GCViTs
(`gc_vit.py`), FAN-Hybrids (`fan.py`) and ViT-Adapters (`vit_adapter.py`: vit_large_nvdinov2).
Other names of the gc_vit / fan / vit families raise a clear NotImplementedError.
"""

from typing import Optional, Sequence

from torch import nn

from tao_pytorch.backbones.fan import FAN, FAN_SPECS, load_pretrained_fan
from tao_pytorch.backbones.gc_vit import GCVIT_SPECS, GCViT, load_pretrained_gc_vit
from tao_pytorch.backbones.resnet import RESNET_SPECS, FrozenBatchNorm2d, ResNet, load_pretrained_backbone
from tao_pytorch.backbones.vit_adapter import VIT_ADAPTER_SPECS, ViTAdapter, load_pretrained_vit_adapter

# Named in the TAO DINO / Deformable DETR tables, not implemented here yet.
NOT_YET_AVAILABLE = ()
AVAILABLE = tuple(sorted(RESNET_SPECS)) + tuple(GCVIT_SPECS) + tuple(FAN_SPECS) + tuple(VIT_ADAPTER_SPECS)
# name -> (trunk class, its pretrained-weights loader) of the transformer families
TRANSFORMER_TRUNKS = {
    **{name: (GCViT, load_pretrained_gc_vit) for name in GCVIT_SPECS},
    **{name: (FAN, load_pretrained_fan) for name in FAN_SPECS},
    **{name: (ViTAdapter, load_pretrained_vit_adapter) for name in VIT_ADAPTER_SPECS},
}


def build_backbone_body(
    name: str,
    return_indices: Sequence[int],
    train_backbone: bool = True,
    pretrained_backbone_path: Optional[str] = None,
    frozen_bn: bool = True,
    resolution: Optional[int] = None,
) -> nn.Module:
    """Trunk `name` returning stages `return_indices` (0..3), weights loaded from a local file if given.
    frozen_bn: ResNets only (GCViT has LayerNorms; FAN keeps TAO's trainable BatchNorms).
    resolution: ViT-Adapters only, the training input side (TAO: dataset.augmentation.fixed_random_crop),
    which sets the position-embedding grid; None = the variant's default (1024 for vit_large_nvdinov2)."""
    if name in TRANSFORMER_TRUNKS:
        trunk, load_pretrained = TRANSFORMER_TRUNKS[name]
        extra = {"resolution": resolution} if trunk is ViTAdapter else {}
        body = trunk(name, return_indices=return_indices, **extra)
        if pretrained_backbone_path:
            load_pretrained(body, pretrained_backbone_path)
        body.freeze(train_backbone)
        return body
    if name in NOT_YET_AVAILABLE or name.startswith(("gc_vit", "fan_", "vit_")):
        raise NotImplementedError(
            f"backbone {name!r} is not yet available in tao-pytorch; available backbones: {', '.join(AVAILABLE)}"
        )
    if name not in RESNET_SPECS:
        raise ValueError(f"unknown backbone {name!r}; available backbones: {', '.join(AVAILABLE)}")
    body = ResNet(name, return_indices=return_indices, frozen_bn=frozen_bn)
    if pretrained_backbone_path:
        load_pretrained_backbone(body, pretrained_backbone_path)
    body.freeze(train_backbone)
    return body


__all__ = [
    "AVAILABLE",
    "FAN",
    "NOT_YET_AVAILABLE",
    "FrozenBatchNorm2d",
    "GCViT",
    "ResNet",
    "ViTAdapter",
    "build_backbone_body",
    "load_pretrained_backbone",
]
