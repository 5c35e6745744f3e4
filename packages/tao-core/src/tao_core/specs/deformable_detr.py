"""Deformable DETR spec (TAO 5.2 Deformable DETR tables): model section, defaults that differ from
DINO's, experiment layout and cross-field rules (all shared with DINO, see detr_common).
"""

from dataclasses import dataclass
from typing import List

from tao_core.spec.fields import spec_field
from tao_core.spec.yaml_spec import YamlSpec
from tao_core.specs.detr_common import (
    ConvertConfig,
    DetrExperimentConfig,
    DetrGenTrtEngineConfig,
    DetrModelConfig,
    DetrTrtConfig,
    OptimConfig,
    TrainConfig,
    check_convert_rules,
    check_detr_rules,
    redefault,
)

NETWORK = "deformable_detr"

# The table's list (ResNet-50 and GCViT), plus resnet_18 / resnet_34 for small machines.
BACKBONES = [
    "resnet_18", "resnet_34", "resnet_50",
    "gc_vit_xxtiny", "gc_vit_xtiny", "gc_vit_tiny", "gc_vit_small", "gc_vit_base", "gc_vit_large",
]


@dataclass
class DDETRModelConfig(DetrModelConfig):
    backbone: str = redefault(DetrModelConfig, "backbone", "resnet_50", options=BACKBONES)
    num_feature_levels: int = redefault(DetrModelConfig, "num_feature_levels", 4, options=[1, 2, 3, 4])
    num_queries: int = redefault(DetrModelConfig, "num_queries", 300)
    dim_feedforward: int = redefault(DetrModelConfig, "dim_feedforward", 1024)
    num_select: int = redefault(DetrModelConfig, "num_select", 100)
    dropout_ratio: float = redefault(DetrModelConfig, "dropout_ratio", 0.3)
    with_box_refine: bool = spec_field(True, "Iterative bounding-box refinement across decoder layers.")


@dataclass
class DDETROptimConfig(OptimConfig):
    lr: float = redefault(OptimConfig, "lr", 2e-4)
    lr_backbone: float = redefault(OptimConfig, "lr_backbone", 2e-5)
    lr_steps: List[int] = redefault(OptimConfig, "lr_steps", [40])
    lr_step_size: int = redefault(OptimConfig, "lr_step_size", 40)


@dataclass
class DDETRTrainConfig(TrainConfig):
    num_epochs: int = redefault(TrainConfig, "num_epochs", 50)
    optim: DDETROptimConfig = redefault(TrainConfig, "optim", DDETROptimConfig)


# Kept in float in Deformable DETR's INT8 engines, from the per-group sensitivity sweep
# (tao-deploy README, "INT8 accuracy"): reference_points, the decoder's initial sampling
# locations. Quantizing it alone took the top-box IoU with FP32 from 1.000 to 0.955 (all the
# error of a fully quantized engine); every other group alone (backbone, input_proj, encoder,
# decoder attention / FFN, bbox_embed, class_embed) kept 1.000.
INT8_KEEP_FLOAT = ["transformer/reference_points"]


@dataclass
class DDETRTrtConfig(DetrTrtConfig):
    int8_keep_float: List[str] = redefault(DetrTrtConfig, "int8_keep_float", list(INT8_KEEP_FLOAT))


@dataclass
class DDETRGenTrtEngineConfig(DetrGenTrtEngineConfig):
    tensorrt: DDETRTrtConfig = redefault(DetrGenTrtEngineConfig, "tensorrt", DDETRTrtConfig)


@dataclass
class ExperimentConfig(DetrExperimentConfig):
    model: DDETRModelConfig = redefault(DetrExperimentConfig, "model", DDETRModelConfig)
    train: DDETRTrainConfig = redefault(DetrExperimentConfig, "train", DDETRTrainConfig)
    gen_trt_engine: DDETRGenTrtEngineConfig = redefault(DetrExperimentConfig, "gen_trt_engine",
                                                        DDETRGenTrtEngineConfig)


def check_rules(cfg, task: str) -> list:
    if task == "convert":
        return check_convert_rules(cfg)
    return check_detr_rules(cfg, task, "Deformable DETR")


TASKS = {
    "convert": ConvertConfig,
    "train": ExperimentConfig,
    "evaluate": ExperimentConfig,
    "inference": ExperimentConfig,
    "export": ExperimentConfig,
    "gen_trt_engine": ExperimentConfig,
}

SPEC = YamlSpec(NETWORK, TASKS, rules=check_rules)
