"""Build the model, the loss and the post-processing of a DETR network from its experiment spec.

The one place where spec fields meet constructors, shared by every task (train, evaluate,
inference, export) of DINO and Deformable DETR.
"""

from torch import nn

from tao_core.errors import TaoUserError
from tao_pytorch.detr.criterion import SetCriterion, build_weight_dict
from tao_pytorch.detr.matcher import HungarianMatcher
from tao_pytorch.detr.postprocess import PostProcess

NETWORKS = ("dino", "deformable_detr")


def build_model(network: str, cfg) -> nn.Module:
    """The nn.Module of `network` for experiment spec `cfg` (model section + dataset.num_classes)."""
    num_classes = cfg.dataset.num_classes
    try:
        if network == "dino":
            from tao_pytorch.dino.model import build_dino

            return build_dino(cfg.model, num_classes)
        if network == "deformable_detr":
            from tao_pytorch.deformable_detr.model import build_deformable_detr

            return build_deformable_detr(cfg.model, num_classes)
    except NotImplementedError as err:  # backbones listed by the seeds but not written yet
        raise TaoUserError(f"model.backbone: {err}") from None
    raise ValueError(f"unknown DETR network {network!r}; expected one of {NETWORKS}")


def build_criterion(network: str, cfg) -> SetCriterion:
    """Hungarian matcher + set criterion with the spec's cost / loss coefficients."""
    m = cfg.model
    matcher = HungarianMatcher(
        cost_class=m.cls_loss_coef, cost_bbox=m.bbox_loss_coef, cost_giou=m.giou_loss_coef, focal_alpha=m.focal_alpha
    )
    if network == "dino":
        enc = {
            "enc_suffix": "_interm",
            "enc_loss_coef": m.get("interm_loss_coef", 1.0),
            "no_enc_box_loss": m.get("no_interm_box_loss", False),
            "use_dn": m.use_dn,
        }
    else:
        enc = {"enc_suffix": "_enc" if m.get("two_stage", False) else None}
    weights = build_weight_dict(
        m.cls_loss_coef, m.bbox_loss_coef, m.giou_loss_coef, dec_layers=m.dec_layers, aux_loss=m.aux_loss, **enc
    )
    return SetCriterion(cfg.dataset.num_classes, matcher, weights, focal_alpha=m.focal_alpha)


def build_postprocess(cfg) -> PostProcess:
    return PostProcess(num_select=cfg.model.num_select)
