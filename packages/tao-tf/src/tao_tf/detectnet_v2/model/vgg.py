"""VGG 16/19 feature extractor at stride 16 (TAO's DetectNet_v2 vgg template).

Five blocks of 3x3 convolutions (64, 128, 256, 512, 512 filters; 2-2-3-3-3 convolutions for
VGG16, 2-2-4-4-4 for VGG19), each convolution followed by ReLU. Downsampling between blocks is
a 2x2 max-pool after blocks 1-4 with use_pooling, else the first convolution of blocks 2-5
strides 2: either way the output is 1/16 of the input (TAO's template without its
classification head, which has no pool after block 5). Layer names are TAO's:
`block_1a_conv_1`, `block_1a_bn_1`, `block_1a_relu`, ..., `block1_pool`; freeze_blocks are 1..5.
"""

from __future__ import annotations

import tf_keras as keras

from tao_core.errors import TaoUserError
from tao_tf.detectnet_v2.model.blocks import check_freeze_blocks, conv_bn

REPEATS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
FILTERS = (64, 128, 256, 512, 512)


def vgg_features(x, num_layers=16, use_batch_norm=False, use_pooling=False, freeze_blocks=(), freeze_bn=False,
                 regularizer=None):  # fmt: skip
    if num_layers not in REPEATS:
        raise TaoUserError(f"model_config.num_layers: vgg supports {sorted(REPEATS)}, got {num_layers}")
    frozen = check_freeze_blocks("vgg", freeze_blocks, range(1, 6))
    for block, (repeats, filters) in enumerate(zip(REPEATS[num_layers], FILTERS, strict=True), start=1):
        for i in range(repeats):
            name = f"block_{block}{chr(ord('a') + i)}"
            stride = 2 if i == 0 and block > 1 and not use_pooling else 1
            x = conv_bn(x, filters, 3, stride, f"{name}_conv_1", f"{name}_bn_1", use_batch_norm, regularizer,
                        block not in frozen, not freeze_bn)  # fmt: skip
            x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        if use_pooling and block < 5:
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"block{block}_pool")(x)
    return x
