"""DINO spec (TAO 5.2 DINO tables): model section, experiment layout and cross-field rules.

Shared sections and rules live in detr_common; this module adds DINO's contrastive-denoising and
positional-embedding fields, its backbone list and the ViT-specific settings.
"""

from dataclasses import dataclass
from typing import List

from tao_core.errors import SpecError
from tao_core.spec.fields import spec_field
from tao_core.spec.yaml_spec import YamlSpec
from tao_core.specs import rules
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

NETWORK = "dino"

# The table's list, plus resnet_18 / resnet_34 so small machines can train something, and
# vit_tiny_nvdinov2 (the ViT-Adapter of vit_large_nvdinov2 at test size, no published weights) so
# the ViT path (LSJ, layer-wise lr decay, export) runs on a CPU.
BACKBONES = [
    "resnet_18", "resnet_34", "resnet_50",
    "gc_vit_xxtiny", "gc_vit_xtiny", "gc_vit_tiny", "gc_vit_small", "gc_vit_base", "gc_vit_large",
    "fan_tiny", "fan_small", "fan_base", "fan_large",
    "vit_large_nvdinov2", "vit_tiny_nvdinov2",
]


@dataclass
class DINOModelConfig(DetrModelConfig):
    backbone: str = redefault(DetrModelConfig, "backbone", "resnet_50", options=BACKBONES)
    use_dn: bool = spec_field(True, "Contrastive denoising training.")
    dn_number: int = spec_field(100, "Number of denoising queries.", gt=0)
    dn_box_noise_scale: float = spec_field(1.0, "Box noise scale of denoising queries; 0 = no noise.", ge=0)
    dn_label_noise_ratio: float = spec_field(0.5, "Label noise ratio of denoising queries; 0 = no noise.", ge=0)
    pe_temperatureH: int = spec_field(20, "Temperature of the sine positional embedding along height.", gt=0)
    pe_temperatureW: int = spec_field(20, "Temperature of the sine positional embedding along width.", gt=0)
    fix_refpoints_hw: int = spec_field(
        -1, "-1: learn box width/height per query; -2: one shared learned size; > 0: this fixed value.", ge=-2
    )
    # TAO dataclass fields the table leaves out (two-stage encoder proposals).
    interm_loss_coef: float = spec_field(1.0, "Weight of the encoder-proposal (intermediate) losses.", ge=0)
    no_interm_box_loss: bool = spec_field(False, "Drop the box terms of the intermediate losses.")


@dataclass
class DINOOptimConfig(OptimConfig):
    # The table calls it lr_decay_rate, the ViT example (and TAO's code) layer_decay_rate; both
    # are accepted and settled to one value by the rules.
    lr_decay_rate: float = spec_field(0.65, "Layer-wise lr decay of ViT backbones (same as layer_decay_rate).", gt=0)
    layer_decay_rate: float = spec_field(0.65, "Layer-wise lr decay of ViT backbones.", gt=0)


@dataclass
class DINOTrainConfig(TrainConfig):
    optim: DINOOptimConfig = redefault(TrainConfig, "optim", DINOOptimConfig)


# Kept in float in DINO's INT8 engines, from the per-group sensitivity sweep (tao-deploy README,
# "INT8 accuracy"): the layers that make the decoder's reference boxes. The two-stage proposal
# head (enc_output, enc_out_class_embed, enc_out_bbox_embed) picks and places every query: in
# INT8 it took the demo model from mAP 0.098 to 0.003; the box-refinement MLPs (bbox_embed) move
# every box. A few small per-query / per-token layers: the backbone and the encoder stay INT8.
INT8_KEEP_FLOAT = ["transformer/enc_out", "bbox_embed"]


@dataclass
class DINOTrtConfig(DetrTrtConfig):
    int8_keep_float: List[str] = redefault(DetrTrtConfig, "int8_keep_float", list(INT8_KEEP_FLOAT))


@dataclass
class DINOGenTrtEngineConfig(DetrGenTrtEngineConfig):
    tensorrt: DINOTrtConfig = redefault(DetrGenTrtEngineConfig, "tensorrt", DINOTrtConfig)


@dataclass
class ExperimentConfig(DetrExperimentConfig):
    model: DINOModelConfig = redefault(DetrExperimentConfig, "model", DINOModelConfig)
    train: DINOTrainConfig = redefault(DetrExperimentConfig, "train", DINOTrainConfig)
    gen_trt_engine: DINOGenTrtEngineConfig = redefault(DetrExperimentConfig, "gen_trt_engine", DINOGenTrtEngineConfig)


def check_rules(cfg, task: str) -> list:
    if task == "convert":
        return check_convert_rules(cfg)
    errs = check_detr_rules(cfg, task, "DINO")
    model = cfg.model
    if model.fix_refpoints_hw == 0:
        errs.append(SpecError("model.fix_refpoints_hw", 0, "-1 (learned per query), -2 (shared) or a value > 0"))
    errs += rules.reconcile_alias(cfg.train.optim, "train.optim", "layer_decay_rate", "lr_decay_rate", 0.65)
    # ViT backbones are trained with large-scale jittering to a fixed square (TAO requires it).
    if task == "train" and model.backbone.startswith("vit_") and cfg.dataset.augmentation.fixed_random_crop is None:
        errs.append(
            SpecError(
                "dataset.augmentation.fixed_random_crop",
                None,
                f"a crop size (a multiple of 32, e.g. 1024) for the ViT backbone {model.backbone}",
            )
        )
    return errs


TASKS = {
    "convert": ConvertConfig,
    "train": ExperimentConfig,
    "evaluate": ExperimentConfig,
    "inference": ExperimentConfig,
    "export": ExperimentConfig,
    "gen_trt_engine": ExperimentConfig,
}

SPEC = YamlSpec(NETWORK, TASKS, rules=check_rules)
