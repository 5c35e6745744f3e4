"""DetectNet_v2 (TAO's GridboxModel) on tf_keras: a stride-16 backbone and two 1x1 heads.

    model = build_model(model_config, num_classes=2, input_shape=(3, 384, 1248))

The model takes `input_1` as [N, C, H, W] (TAO's channels-first layout, RGB scaled to [0, 1])
and returns `output_cov` [N, C, H/16, W/16] (sigmoid) and `output_bbox` [N, 4C, H/16, W/16]
(linear), the tensors DeepStream's detectnet parser reads. TensorFlow's CPU kernels only run
convolutions channels-last, so the backbone works in NHWC between two transposes; the exported
graph keeps TAO's names (`output_cov/Sigmoid`, `output_bbox/BiasAdd`).
"""

from __future__ import annotations

import tf_keras as keras

from tao_core.errors import TaoUserError
from tao_tf.detectnet_v2.model.resnet import resnet_features

STRIDE = 16


class BiasAddNCHW(keras.layers.Layer):
    """Per-channel bias on a channels-first tensor (so the graph op is `output_bbox/BiasAdd`)."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[1]),), initializer="zeros")

    def call(self, x):
        import tensorflow as tf

        return tf.nn.bias_add(x, self.bias, data_format="NCHW")


CUSTOM_OBJECTS = {"BiasAddNCHW": BiasAddNCHW}


def _regularizer(training_config):
    """L1 / L2 / NO_REG kernel regularizer from training_config.regularizer."""
    if training_config is None or not training_config.HasField("regularizer"):
        return None
    reg = training_config.regularizer
    name = type(reg).RegularizationType.Name(reg.type)
    if name == "L1":
        return keras.regularizers.L1(reg.weight)
    if name == "L2":
        return keras.regularizers.L2(reg.weight)
    return None


def build_model(model_config, num_classes: int, input_shape: tuple[int, int, int], training_config=None):
    """The tf_keras Model for a ModelConfig (arch resnet; num_layers 10/18/34/50/101)."""
    c, h, w = input_shape
    if h % STRIDE or w % STRIDE:
        raise TaoUserError(f"augmentation_config.preprocessing: input {w}x{h} must be a multiple of {STRIDE}")
    arch = model_config.arch or "resnet"
    if arch != "resnet":
        raise TaoUserError(f"model_config.arch: {arch!r} is not available yet in tao-tf; use 'resnet'")
    regularizer = _regularizer(training_config)
    inputs = keras.Input(shape=(c, h, w), name="input_1")
    x = keras.layers.Permute((2, 3, 1), name="input_to_nhwc")(inputs)
    features = resnet_features(
        x,
        num_layers=model_config.num_layers or 18,
        use_batch_norm=model_config.use_batch_norm,
        use_pooling=model_config.use_pooling,
        all_projections=model_config.all_projections,
        freeze_blocks=[int(b) for b in model_config.freeze_blocks],
        freeze_bn=model_config.freeze_bn,
        regularizer=regularizer,
    )
    if model_config.dropout_rate > 0:
        features = keras.layers.Dropout(model_config.dropout_rate, name="dropout")(features)
    cov = keras.layers.Conv2D(num_classes, 1, name="conv_cov", kernel_regularizer=regularizer)(features)
    cov = keras.layers.Permute((3, 1, 2), name="cov_to_nchw")(cov)
    cov = keras.layers.Activation("sigmoid", name="output_cov")(cov)
    bbox = keras.layers.Conv2D(4 * num_classes, 1, use_bias=False, name="conv_bbox",
                               kernel_regularizer=regularizer)(features)  # fmt: skip
    bbox = keras.layers.Permute((3, 1, 2), name="bbox_to_nchw")(bbox)
    bbox = BiasAddNCHW(name="output_bbox")(bbox)
    return keras.Model(inputs, [cov, bbox], name=f"detectnet_v2_resnet{model_config.num_layers or 18}")
