"""DINO nn.Modules (no I/O)."""

from tao_pytorch.dino.model.dino import DINO, build_dino
from tao_pytorch.dino.model.dn_components import dn_post_process, prepare_for_cdn
from tao_pytorch.dino.model.transformer import DINOTransformer

__all__ = ["DINO", "DINOTransformer", "build_dino", "dn_post_process", "prepare_for_cdn"]
