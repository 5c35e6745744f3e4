"""Deformable DETR nn.Modules (no I/O)."""

from tao_pytorch.deformable_detr.model.deformable_detr import DeformableDETR, build_deformable_detr

__all__ = ["DeformableDETR", "build_deformable_detr"]
