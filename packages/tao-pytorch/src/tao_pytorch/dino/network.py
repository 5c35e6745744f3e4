"""DINO as the shared DETR tasks and training see it (tao_pytorch.detr.network.DetrNetwork)."""

from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.dino.model import build_dino


def encoder_loss_terms(m) -> dict:
    """Loss terms of DINO's extra outputs: the two-stage encoder proposals ("_interm", weighted by
    interm_loss_coef) and the contrastive denoising queries ("_dn")."""
    return {"enc_suffix": "_interm", "enc_loss_coef": m.interm_loss_coef, "no_enc_box_loss": m.no_interm_box_loss,
            "use_dn": m.use_dn}


# TAO's checkpoint names: dino_model_latest.pth
NETWORK = DetrNetwork(name="dino", checkpoint_prefix="dino", model_builder=build_dino,
                      encoder_loss_terms=encoder_loss_terms)
