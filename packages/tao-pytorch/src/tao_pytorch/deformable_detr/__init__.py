"""Deformable DETR (TAO `deformable_detr` network)."""
