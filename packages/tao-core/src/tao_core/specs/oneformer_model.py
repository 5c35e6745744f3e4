"""OneFormer `model:` section (seed 004, "Model Config", "Backbone Configuration", "Swin Configuration").

Defaults are the seed's Default / Recommended column. Fields the seed names without a value
(sem_seg_head, one_former, text_encoder internals) take the values of the reference OneFormer
configuration (Swin-L, COCO panoptic, 133 classes), so the full sample spec of seed 004 builds
the model the seed describes.

Two spellings printed by the seed are both accepted and settled by the rules
(`oneformer_rules.py`), so code reads one value:
  - model.backbone.name (the sample spec) and model.backbone.type (the table);
  - model.{object_mask_threshold, overlap_threshold, test_topk_per_image} (the table) and the same
    keys under model.test (the sample spec).
"""

from dataclasses import dataclass
from typing import List, Optional

from tao_core.spec.fields import spec_field

# The seed: "OneFormer currently supports only Swin Transformers and EfficientViT models."
BACKBONES = ["D2SwinTransformer", "EfficientViT"]
EFFICIENTVIT_VARIANTS = ["b0", "b1", "b2", "b3", "l0", "l1", "l2", "l3"]
MODES = ["semantic", "instance", "panoptic"]
# Backbone feature maps are named by stride: res2 = 1/4 ... res5 = 1/32 (detectron2 convention).
FEATURE_NAMES = ["res2", "res3", "res4", "res5"]


@dataclass
class SwinConfig:
    embed_dim: int = spec_field(192, "Dimension of the embedding.", gt=0)
    depths: List[int] = spec_field([2, 2, 18, 2], "Number of layers in each stage.", item_gt=0)
    num_heads: List[int] = spec_field([6, 12, 24, 48], "Number of attention heads in each stage.", item_gt=0)
    window_size: int = spec_field(12, "Size of the window for local attention.", gt=0)
    mlp_ratio: float = spec_field(4.0, "Ratio of the MLP hidden dimension to the embedding dimension.", gt=0)
    patch_size: int = spec_field(4, "Size of the patch for the patch embedding.", gt=0)
    patch_norm: bool = spec_field(True, "Whether to normalize the patch embedding.")
    ape: bool = spec_field(False, "Whether to use absolute positional encoding.")
    qkv_bias: bool = spec_field(True, "Whether to use bias in the QKV projection.")
    qk_scale: Optional[float] = spec_field(None, "Scale factor for the QK projection; null uses head_dim ** -0.5.", gt=0)
    attn_drop_rate: float = spec_field(0.0, "Dropout rate for the attention.", ge=0, lt=1)
    drop_rate: float = spec_field(0.0, "Dropout rate for the MLP.", ge=0, lt=1)
    drop_path_rate: float = spec_field(0.3, "Drop path rate for the MLP.", ge=0, lt=1)
    out_features: List[str] = spec_field(
        ["res2", "res3", "res4", "res5"], "Names of the extracted feature maps.", item_options=FEATURE_NAMES
    )
    out_indices: List[int] = spec_field([0, 1, 2, 3], "Stages to extract feature maps.", item_options=[0, 1, 2, 3])
    use_checkpoint: bool = spec_field(False, "Whether to use (activation) checkpointing in the transformer.")
    pretrain_img_size: int = spec_field(384, "Image size used in pretraining.", gt=0)


@dataclass
class EfficientViTConfig:
    # The seed marks EfficientViT as experimental and prints no fields for it; the variant and
    # the feature maps are the least a model builder needs.
    variant: str = spec_field("l2", "EfficientViT variant.", options=EFFICIENTVIT_VARIANTS)
    out_features: List[str] = spec_field(
        ["res2", "res3", "res4", "res5"], "Names of the extracted feature maps.", item_options=FEATURE_NAMES
    )


@dataclass
class BackboneConfig:
    name: str = spec_field("D2SwinTransformer", "Backbone type (the sample spec's spelling).", options=BACKBONES)
    type: Optional[str] = spec_field(
        None, "Backbone type (the table's spelling of `name`); when set it decides the backbone.", options=BACKBONES
    )
    freeze_at: int = spec_field(0, "Freeze the stem and the first `freeze_at` stages (0: train everything).", ge=0)
    pretrained_weights: Optional[str] = spec_field(None, "Path to the pretrained backbone model.")
    swin: SwinConfig = spec_field(SwinConfig, "Configuration for the Swin backbones.")
    efficientvit: EfficientViTConfig = spec_field(EfficientViTConfig, "Configuration for the EfficientViT backbones.")


@dataclass
class SemSegHeadConfig:
    name: str = spec_field("OneFormerHead", "Segmentation head.", options=["OneFormerHead"])
    num_classes: int = spec_field(133, "Number of classes (without the 'no object' class).", gt=0)
    ignore_value: int = spec_field(255, "Label value ignored by the semantic loss and metrics.", ge=0)
    loss_weight: float = spec_field(1.0, "Loss weight of the segmentation head.", ge=0)
    # SHI-Labs' value: res2 feeds the FPN level that makes the stride-4 mask features
    # (common_stride); the deformable encoder reads deformable_transformer_encoder_in_features.
    in_features: List[str] = spec_field(
        ["res2", "res3", "res4", "res5"], "Backbone feature maps the pixel decoder reads.", item_options=FEATURE_NAMES
    )
    common_stride: int = spec_field(4, "Stride of the per-pixel embedding (mask features).", options=[4, 8, 16, 32])
    transformer_enc_layers: int = spec_field(6, "Deformable-attention encoder layers of the pixel decoder.", gt=0)
    convs_dim: int = spec_field(256, "Channels of the pixel decoder convolutions.", gt=0)
    mask_dim: int = spec_field(256, "Channels of the mask features.", gt=0)
    pixel_decoder_name: str = spec_field(
        "MSDeformAttnPixelDecoder", "Pixel decoder.", options=["MSDeformAttnPixelDecoder"]
    )
    deformable_transformer_encoder_in_features: List[str] = spec_field(
        ["res3", "res4", "res5"], "Feature maps fed to the deformable encoder.", item_options=FEATURE_NAMES
    )
    norm: str = spec_field("GN", "Normalization of the pixel decoder convolutions.", options=["GN", "BN", "SyncBN", "FrozenBN"])


@dataclass
class OneFormerDecoderConfig:
    hidden_dim: int = spec_field(256, "Hidden dimension of the transformer decoder.", gt=0)
    nheads: int = spec_field(8, "Attention heads of the transformer decoder.", gt=0)
    dim_feedforward: int = spec_field(2048, "Feed-forward dimension of the transformer decoder.", gt=0)
    enc_layers: int = spec_field(0, "Extra transformer encoder layers.", ge=0)
    dec_layers: int = spec_field(10, "Transformer decoder layers (including the first, query-only one).", gt=0)
    pre_norm: bool = spec_field(False, "Pre-norm transformer layers.")
    enforce_input_proj: bool = spec_field(False, "Always add an input projection before the decoder.")
    size_divisibility: int = spec_field(32, "Images are padded to a multiple of this (0: no padding).", ge=0)
    num_object_queries: int = spec_field(150, "Number of queries (object queries plus n_ctx text-context queries).", gt=0)
    num_feature_levels: int = spec_field(3, "Multi-scale feature levels the decoder attends to.", gt=0)
    train_num_points: int = spec_field(12544, "Points sampled per mask for the mask losses.", gt=0)
    oversample_ratio: float = spec_field(3.0, "Oversampling ratio of the point sampling.", ge=1)
    importance_sample_ratio: float = spec_field(0.75, "Share of points sampled by uncertainty.", ge=0, le=1)
    mask_weight: float = spec_field(5.0, "Weight of the mask (sigmoid CE) loss.", ge=0)
    dice_weight: float = spec_field(5.0, "Weight of the dice loss.", ge=0)
    class_weight: float = spec_field(2.0, "Weight of the classification loss.", ge=0)
    no_object_weight: float = spec_field(0.1, "Classification weight of the 'no object' class.", ge=0)
    contrastive_weight: float = spec_field(0.5, "Weight of the query-text contrastive loss.", ge=0)
    contrastive_temperature: float = spec_field(0.07, "Temperature of the contrastive loss.", gt=0)
    deep_supervision: bool = spec_field(True, "Add the losses of every decoder layer.")
    dropout: float = spec_field(0.1, "Dropout of the transformer decoder.", ge=0, lt=1)
    class_dec_layers: int = spec_field(2, "Layers of the text-query (class) transformer.", gt=0)
    use_task_norm: bool = spec_field(True, "Normalize the task token.")
    transformer_decoder_name: str = spec_field(
        "ContrastiveMultiScaleMaskedTransformerDecoder",
        "Transformer decoder.",
        options=["ContrastiveMultiScaleMaskedTransformerDecoder"],
    )
    transformer_in_feature: str = spec_field(
        "multi_scale_pixel_decoder", "Decoder input.", options=["multi_scale_pixel_decoder"]
    )


@dataclass
class TextEncoderConfig:
    context_length: int = spec_field(77, "Token length of the task and class texts.", gt=0)
    vocab_size: int = spec_field(49408, "Vocabulary size (CLIP BPE).", gt=0)
    width: int = spec_field(256, "Width of the text transformer.", gt=0)
    num_layers: int = spec_field(6, "Layers of the text transformer.", gt=0)
    n_ctx: int = spec_field(16, "Learnable text-context queries (taken from num_object_queries).", ge=0)
    proj_num_layers: int = spec_field(2, "Layers of the text projector.", gt=0)


@dataclass
class PostprocessConfig:
    # The sample spec of seed 004 nests the thresholds here; the model table lists them directly
    # under model. Both carry the same defaults and the rules make them agree.
    object_mask_threshold: float = spec_field(0.4, "Classification confidence threshold.", ge=0, le=1)
    overlap_threshold: float = spec_field(0.8, "Overlap threshold for panoptic inference.", ge=0, le=1)
    test_topk_per_image: int = spec_field(100, "Keep topk instances per image for instance inference.", gt=0)
    semantic_on: bool = spec_field(True, "Compute semantic results in evaluation.")
    instance_on: bool = spec_field(False, "Compute instance results in evaluation.")
    panoptic_on: bool = spec_field(False, "Compute panoptic results in evaluation.")
    detection_on: bool = spec_field(False, "Compute box detection results in evaluation.")


@dataclass
class ModelConfig:
    backbone: BackboneConfig = spec_field(BackboneConfig, "Backbone configuration.")
    one_former: OneFormerDecoderConfig = spec_field(OneFormerDecoderConfig, "Configuration for the oneformer architecture.")
    sem_seg_head: SemSegHeadConfig = spec_field(SemSegHeadConfig, "Configuration for the segmentation head.")
    text_encoder: TextEncoderConfig = spec_field(TextEncoderConfig, "Configuration for the text encoder.")
    mode: str = spec_field("semantic", "Postprocessing mode.", options=MODES)
    object_mask_threshold: float = spec_field(0.4, "Classification confidence threshold.", ge=0, le=1)
    overlap_threshold: float = spec_field(0.8, "Overlap threshold for panoptic inference.", ge=0, le=1)
    test_topk_per_image: int = spec_field(100, "Keep topk instances per image for instance inference.", gt=0)
    test: PostprocessConfig = spec_field(PostprocessConfig, "Test-time postprocessing (the sample spec's nesting of the thresholds).")
