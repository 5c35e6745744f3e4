"""GoogLeNet (Inception v1) feature extractor at stride 16 (TAO's DetectNet_v2 googlenet template).

Stem: conv1 7x7/2 (64) -> pool1 2x2/2 -> conv2_reduce 1x1 (64) -> conv2 3x3 (192) -> pool2 2x2/2,
then inception 3a, 3b -> pool3 2x2/2 -> 4a..4e -> 5a, 5b (TAO's template drops the pool before
5a when it has no classification head, so the output is 1/16 of the input, 1024 channels).
Each inception block has TAO's four branches and names: `inception_3a_1x1`; `_3x3_reduce` ->
`_3x3`; `_5x5_reduce` -> `_5x5`; `_pool` (3x3/1 max-pool) -> `_pool_proj`; each convolution
with BatchNormalization `<conv>_bn` and ReLU, concatenated as `inception_3a_output`.
freeze_blocks: 0 = the stem convolutions, 1..9 = 3a, 3b, 4a..4e, 5a, 5b (the documentation lists
0..7; TAO's template also accepts 8 and 9).
"""

from __future__ import annotations

import tf_keras as keras

from tao_tf.detectnet_v2.model.blocks import check_freeze_blocks, conv_bn

# (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) filters of each block, in order (block ids 1..9)
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _inception(x, index, filters, use_bn, regularizer, trainable, bn_trainable):
    prefix = f"inception_{index}"

    def branch(y, n, kernel, suffix):
        y = conv_bn(y, n, kernel, 1, f"{prefix}_{suffix}", f"{prefix}_{suffix}_bn", use_bn, regularizer, trainable,
                    bn_trainable)  # fmt: skip
        return keras.layers.Activation("relu", name=f"{prefix}_{suffix}_relu")(y)

    b1 = branch(x, filters[0], 1, "1x1")
    b2 = branch(branch(x, filters[1], 1, "3x3_reduce"), filters[2], 3, "3x3")
    b3 = branch(branch(x, filters[3], 1, "5x5_reduce"), filters[4], 5, "5x5")
    b4 = keras.layers.MaxPooling2D(3, 1, padding="same", name=f"{prefix}_pool")(x)
    b4 = branch(b4, filters[5], 1, "pool_proj")
    return keras.layers.Concatenate(axis=-1, name=f"{prefix}_output")([b1, b2, b3, b4])


def googlenet_features(x, use_batch_norm=True, freeze_blocks=(), freeze_bn=False, regularizer=None):
    frozen = check_freeze_blocks("googlenet", freeze_blocks, range(10))
    stem, bn_ok = 0 not in frozen, not freeze_bn
    x = conv_bn(x, 64, 7, 2, "conv1", "bn_conv1", use_batch_norm, regularizer, stem, bn_ok)
    x = keras.layers.Activation("relu", name="activation_1")(x)
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool1")(x)
    x = conv_bn(x, 64, 1, 1, "conv2_reduce", "bn_conv2_reduce", use_batch_norm, regularizer, stem, bn_ok)
    x = keras.layers.Activation("relu", name="activation_2")(x)
    x = conv_bn(x, 192, 3, 1, "conv2", "bn_conv2", use_batch_norm, regularizer, stem, bn_ok)
    x = keras.layers.Activation("relu", name="activation_3")(x)
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool2")(x)
    for block, (index, filters) in enumerate(INCEPTION.items(), start=1):
        x = _inception(x, index, filters, use_batch_norm, regularizer, block not in frozen, bn_ok)
        if index == "3b":
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name="pool3")(x)
    return x
