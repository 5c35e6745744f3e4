"""Deformable DETR as the shared DETR tasks and training see it (tao_pytorch.detr.network.DetrNetwork)."""

from tao_pytorch.deformable_detr.model import build_deformable_detr
from tao_pytorch.detr.network import DetrNetwork


def encoder_loss_terms(m) -> dict:
    """None: the tasks build TAO's Deformable DETR, which has no two-stage encoder proposals."""
    return {"enc_suffix": None}


# TAO's checkpoint names: dd_model_latest.pth
NETWORK = DetrNetwork(name="deformable_detr", checkpoint_prefix="dd", model_builder=build_deformable_detr,
                      encoder_loss_terms=encoder_loss_terms)
