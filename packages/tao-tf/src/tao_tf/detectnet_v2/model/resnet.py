"""ResNet 10/18/34/50/101 feature extractor at stride 16 (TAO's DetectNet_v2 resnet template).

conv1 (7x7, stride 2) -> [max-pool 3x3/2 when use_pooling] -> four stages of 64/128/256/512
filters (x4 for the bottleneck depths 50/101). The first stage strides 2 unless pooling already
did; stages 2 and 3 stride 2; stage 4 keeps stride 1, so the output is 1/16 of the input. A
block's shortcut is a 1x1 projection when the shape changes, or always with all_projections.
Layer names follow TAO's (`conv1`, `block_2a_conv_1`, `block_2a_conv_shortcut`, ...), which
is what `freeze_blocks` (0 = conv1, 1..4 = stages) and prune's `-el` refer to.
"""

from __future__ import annotations

import tf_keras as keras

from tao_core.errors import TaoUserError
from tao_tf.detectnet_v2.model.blocks import check_freeze_blocks, conv_bn

BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
FILTERS = (64, 128, 256, 512)


def _conv(x, filters, kernel, stride, name, use_bn, regularizer, trainable=True, bn_trainable=True):
    bn_name = name.replace("conv", "bn", 1) if name != "conv1" else "bn_conv1"
    # epsilon 1e-3: Keras's default, which TAO's resnet template keeps
    return conv_bn(x, filters, kernel, stride, name, bn_name, use_bn, regularizer, trainable, bn_trainable)


def resnet_features(x, num_layers=18, use_batch_norm=False, use_pooling=False, all_projections=False,
                    freeze_blocks=(), freeze_bn=False, regularizer=None):  # fmt: skip
    if num_layers not in BLOCKS:
        raise TaoUserError(f"model_config.num_layers: resnet supports {sorted(BLOCKS)}, got {num_layers}")
    bottleneck = num_layers >= 50
    frozen = check_freeze_blocks("resnet", freeze_blocks, range(5))
    bn_ok = not freeze_bn
    x = _conv(x, 64, 7, 2, "conv1", use_batch_norm, regularizer, 0 not in frozen, bn_ok)
    x = keras.layers.Activation("relu", name="activation_1")(x)
    if use_pooling:
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    for stage, (repeats, filters) in enumerate(zip(BLOCKS[num_layers], FILTERS, strict=True), start=1):
        stride = {1: 1 if use_pooling else 2, 2: 2, 3: 2, 4: 1}[stage]
        trainable = stage not in frozen
        for i in range(repeats):
            name = f"block_{stage}{chr(ord('a') + i)}"
            s = stride if i == 0 else 1
            out_filters = filters * 4 if bottleneck else filters
            shortcut = x
            if bottleneck:
                y = _conv(x, filters, 1, s, f"{name}_conv_1", use_batch_norm, regularizer, trainable, bn_ok)
                y = keras.layers.Activation("relu", name=f"{name}_relu_1")(y)
                y = _conv(y, filters, 3, 1, f"{name}_conv_2", use_batch_norm, regularizer, trainable, bn_ok)
                y = keras.layers.Activation("relu", name=f"{name}_relu_2")(y)
                y = _conv(y, out_filters, 1, 1, f"{name}_conv_3", use_batch_norm, regularizer, trainable, bn_ok)
            else:
                y = _conv(x, filters, 3, s, f"{name}_conv_1", use_batch_norm, regularizer, trainable, bn_ok)
                y = keras.layers.Activation("relu", name=f"{name}_relu_1")(y)
                y = _conv(y, filters, 3, 1, f"{name}_conv_2", use_batch_norm, regularizer, trainable, bn_ok)
            if all_projections or s != 1 or int(x.shape[-1]) != out_filters:
                shortcut = _conv(x, out_filters, 1, s, f"{name}_conv_shortcut", use_batch_norm, regularizer,
                                 trainable, bn_ok)  # fmt: skip
            x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
            x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x
