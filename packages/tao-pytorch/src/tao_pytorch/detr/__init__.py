"""Pieces the DETR-family networks share (see each module's docstring); a network plugs in
through tao_pytorch.detr.network.DetrNetwork."""

from tao_pytorch.detr.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou, inverse_sigmoid
from tao_pytorch.detr.criterion import SetCriterion, build_weight_dict, sigmoid_focal_loss, total_loss
from tao_pytorch.detr.matcher import HungarianMatcher
from tao_pytorch.detr.msda import MSDA_KERNELS, MSDeformAttn, ms_deform_attn_core
from tao_pytorch.detr.position_encoding import PositionEmbeddingSine
from tao_pytorch.detr.postprocess import PostProcess

__all__ = [
    "MSDA_KERNELS",
    "HungarianMatcher",
    "MSDeformAttn",
    "PositionEmbeddingSine",
    "PostProcess",
    "SetCriterion",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "build_weight_dict",
    "generalized_box_iou",
    "inverse_sigmoid",
    "ms_deform_attn_core",
    "sigmoid_focal_loss",
    "total_loss",
]
