"""MobileNet v1 and v2 feature extractors at stride 16 (TAO's DetectNet_v2 mobilenet templates, alpha 1).

Both pad explicitly (ZeroPadding2D 1 + a 'valid' 3x3 convolution, as TAO's templates do for
TensorRT) and stop before the stride-32 stage.

- mobilenet_v1: `conv1` 3x3/2 (32) then depthwise-separable blocks 1..11 (`conv_dw_<i>` 3x3
  depthwise + `conv_pw_<i>` 1x1; 64, 128, 128, 256, 256, 512 x6 filters; blocks 2, 4, 6 stride
  2), BatchNormalization `<conv>_bn`, ReLUs `conv_block_relu`, `conv_dw_<i>_relu`,
  `conv_pw_relu_<i>`. freeze_blocks 0 (conv1) .. 11. Output 512 channels.
- mobilenet_v2: `conv1` 3x3/2 (32, BN `bn_conv1`, ReLU `re_lu_0`) then inverted-residual blocks
  0..12 (`block_<i>_expand` 1x1 to 6x the input channels (none in block 0, whose prefix is
  `expanded_conv_`), `<prefix>depthwise` 3x3, `<prefix>project` 1x1 to 16, 24 x2, 32 x3, 64 x4,
  96 x3 filters; blocks 1, 3, 6 stride 2); a block whose input and output shapes match adds its
  input back (`<prefix>add`), through a 1x1 `<prefix>projected_inputs` with all_projections.
  BatchNormalization epsilon 1e-3, momentum 0.999 as in TAO. freeze_blocks 0 (conv1) .. 13
  (block i is id i + 1). Output 96 channels.

QAT (training_config.enable_qat) is refused for these templates, as TAO does (build.check_qat).
"""

from __future__ import annotations

import tf_keras as keras

from tao_tf.detectnet_v2.model.blocks import batch_norm, check_freeze_blocks, conv_bn

V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
             (512, 1))  # fmt: skip  (pointwise filters, stride) of blocks 1..11
V2_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
             (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6))  # fmt: skip  (filters, stride, expansion)
V2_BN = {"momentum": 0.999, "epsilon": 1e-3}


def _depthwise(x, stride, name, use_bias, regularizer, trainable):
    return keras.layers.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=use_bias, name=name,
                                        depthwise_regularizer=regularizer, trainable=trainable)(x)  # fmt: skip


def mobilenet_v1_features(x, use_batch_norm=True, freeze_blocks=(), freeze_bn=False, regularizer=None):
    frozen = check_freeze_blocks("mobilenet_v1", freeze_blocks, range(12))
    bn_ok = not freeze_bn
    x = keras.layers.ZeroPadding2D(1, name="conv1_pad")(x)
    x = conv_bn(x, 32, 3, 2, "conv1", "conv1_bn", use_batch_norm, regularizer, 0 not in frozen, bn_ok,
                padding="valid")  # fmt: skip
    x = keras.layers.ReLU(name="conv_block_relu")(x)
    for i, (filters, stride) in enumerate(V1_BLOCKS, start=1):
        trainable = i not in frozen
        x = keras.layers.ZeroPadding2D(1, name=f"conv_pad_{i}")(x)
        x = _depthwise(x, stride, f"conv_dw_{i}", not use_batch_norm, regularizer, trainable)
        x = batch_norm(x, f"conv_dw_{i}_bn", use_batch_norm, trainable and bn_ok)
        x = keras.layers.ReLU(name=f"conv_dw_{i}_relu")(x)
        x = conv_bn(x, filters, 1, 1, f"conv_pw_{i}", f"conv_pw_{i}_bn", use_batch_norm, regularizer, trainable,
                    bn_ok, padding="valid")  # fmt: skip
        x = keras.layers.ReLU(name=f"conv_pw_relu_{i}")(x)
    return x


def mobilenet_v2_features(x, use_batch_norm=True, all_projections=False, freeze_blocks=(), freeze_bn=False,
                          regularizer=None):  # fmt: skip
    frozen = check_freeze_blocks("mobilenet_v2", freeze_blocks, range(14))
    bn_ok = not freeze_bn
    x = keras.layers.ZeroPadding2D(1, name="conv1_pad")(x)
    x = conv_bn(x, 32, 3, 2, "conv1", "bn_conv1", use_batch_norm, regularizer, 0 not in frozen, bn_ok,
                padding="valid", bn_momentum=V2_BN["momentum"])  # fmt: skip
    x = keras.layers.ReLU(name="re_lu_0")(x)
    for block, (filters, stride, expansion) in enumerate(V2_BLOCKS):
        trainable = block + 1 not in frozen
        inputs, in_channels = x, int(x.shape[-1])
        prefix = f"block_{block}_" if block else "expanded_conv_"
        if block:
            x = conv_bn(x, expansion * in_channels, 1, 1, f"{prefix}expand", f"{prefix}expand_bn", use_batch_norm,
                        regularizer, trainable, bn_ok, padding="valid", bn_momentum=V2_BN["momentum"])  # fmt: skip
            x = keras.layers.ReLU(name=f"re_lu_{block + 1}")(x)
        x = keras.layers.ZeroPadding2D(1, name=f"{prefix}depthwise_pad")(x)
        x = _depthwise(x, stride, f"{prefix}depthwise", not use_batch_norm, regularizer, trainable)
        x = batch_norm(x, f"{prefix}depthwise_bn", use_batch_norm, trainable and bn_ok, **V2_BN)
        x = keras.layers.ReLU(name=f"{prefix}relu")(x)
        x = conv_bn(x, filters, 1, 1, f"{prefix}project", f"{prefix}project_bn", use_batch_norm, regularizer,
                    trainable, bn_ok, padding="valid", bn_momentum=V2_BN["momentum"])  # fmt: skip
        if in_channels == filters and stride == 1:
            if all_projections:
                inputs = keras.layers.Conv2D(in_channels, 1, use_bias=False, name=f"{prefix}projected_inputs",
                                             kernel_regularizer=regularizer, trainable=trainable)(inputs)  # fmt: skip
            x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x
