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

STRIDE = 16
NO_QAT = ("mobilenet_v1", "mobilenet_v2")  # TAO refuses quantization-aware training for these
# the layers after the feature map: float32 even under --use_amp, so the sigmoid and the loss stay exact
HEAD_LAYERS = ("conv_cov", "cov_to_nchw", "output_cov", "conv_bbox", "bbox_to_nchw", "output_bbox")


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


def _features(x, mc, regularizer):
    """The stride-16 feature map of the model_config.arch template (imported on demand: one module each)."""
    arch = mc.arch or "resnet"
    common = {"freeze_blocks": list(mc.freeze_blocks), "freeze_bn": mc.freeze_bn, "regularizer": regularizer}
    if arch == "resnet":
        from tao_tf.detectnet_v2.model.resnet import resnet_features

        return resnet_features(x, num_layers=mc.num_layers or 18, use_batch_norm=mc.use_batch_norm,
                               use_pooling=mc.use_pooling, all_projections=mc.all_projections, **common)  # fmt: skip
    if arch == "vgg":
        from tao_tf.detectnet_v2.model.vgg import vgg_features

        return vgg_features(x, num_layers=mc.num_layers or 16, use_batch_norm=mc.use_batch_norm,
                            use_pooling=mc.use_pooling, **common)  # fmt: skip
    if arch == "googlenet":
        from tao_tf.detectnet_v2.model.googlenet import googlenet_features

        # TAO's builder always uses batch norm for googlenet (its LRN alternative cannot be exported)
        return googlenet_features(x, use_batch_norm=True, **common)
    if arch == "mobilenet_v1":
        from tao_tf.detectnet_v2.model.mobilenet import mobilenet_v1_features

        return mobilenet_v1_features(x, use_batch_norm=mc.use_batch_norm, **common)
    if arch == "mobilenet_v2":
        from tao_tf.detectnet_v2.model.mobilenet import mobilenet_v2_features

        return mobilenet_v2_features(x, use_batch_norm=mc.use_batch_norm, all_projections=mc.all_projections,
                                     **common)  # fmt: skip
    raise TaoUserError(f"model_config.arch: {arch!r} is not a DetectNet_v2 template; expected one of "
                       "resnet, vgg, googlenet, mobilenet_v1, mobilenet_v2")  # fmt: skip


def check_qat(model_config) -> None:
    """TAO's rule: no quantization-aware training for the mobilenet templates."""
    if (model_config.arch or "resnet") in NO_QAT:
        raise TaoUserError(f"training_config.enable_qat: quantization-aware training is not supported for "
                           f"model_config.arch {model_config.arch!r} (as in TAO); train without enable_qat and "
                           "export INT8 with post-training calibration")  # fmt: skip


def model_name(model_config) -> str:
    arch = model_config.arch or "resnet"
    depth = {"resnet": model_config.num_layers or 18, "vgg": model_config.num_layers or 16}.get(arch, "")
    return f"detectnet_v2_{arch}{depth}"


def build_model(model_config, num_classes: int, input_shape: tuple[int, int, int], training_config=None):
    """The tf_keras Model for a ModelConfig (arch resnet 10/18/34/50/101, vgg 16/19, googlenet, mobilenet_v1/v2)."""
    c, h, w = input_shape
    if h % STRIDE or w % STRIDE:
        raise TaoUserError(f"augmentation_config.preprocessing: input {w}x{h} must be a multiple of {STRIDE}")
    regularizer = _regularizer(training_config)
    inputs = keras.Input(shape=(c, h, w), name="input_1")
    x = keras.layers.Permute((2, 3, 1), name="input_to_nhwc")(inputs)
    features = _features(x, model_config, regularizer)
    if model_config.dropout_rate > 0:
        features = keras.layers.Dropout(model_config.dropout_rate, name="dropout")(features)
    # HEAD_LAYERS: float32 under any global mixed-precision policy
    cov = keras.layers.Conv2D(num_classes, 1, name="conv_cov", kernel_regularizer=regularizer,
                              dtype="float32")(features)  # fmt: skip
    cov = keras.layers.Permute((3, 1, 2), name="cov_to_nchw", dtype="float32")(cov)
    cov = keras.layers.Activation("sigmoid", name="output_cov", dtype="float32")(cov)
    bbox = keras.layers.Conv2D(4 * num_classes, 1, use_bias=False, name="conv_bbox", kernel_regularizer=regularizer,
                               dtype="float32")(features)  # fmt: skip
    bbox = keras.layers.Permute((3, 1, 2), name="bbox_to_nchw", dtype="float32")(bbox)
    bbox = BiasAddNCHW(name="output_bbox", dtype="float32")(bbox)
    return keras.Model(inputs, [cov, bbox], name=model_name(model_config))
