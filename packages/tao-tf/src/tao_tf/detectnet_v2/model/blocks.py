"""Layer helpers shared by the DetectNet_v2 feature-extractor templates (resnet, vgg, googlenet, mobilenets).

Every template builds channels-last (NHWC) between build.py's two transposes, names its layers
as TAO's templates do (that is what `freeze_blocks`, pretrained weights copied by layer name and
prune's `-el` refer to) and reads the same ModelConfig switches: `use_batch_norm` (a convolution
followed by BatchNormalization has no bias), `freeze_blocks` (convolutions of those blocks are not
trained) and `freeze_bn` (no BatchNormalization is trained or updates its statistics).
"""

from __future__ import annotations

import tf_keras as keras

from tao_core.errors import TaoUserError


def conv_bn(x, filters, kernel, stride, name, bn_name, use_bn, regularizer, trainable=True, bn_trainable=True,
            padding="same", bn_momentum=0.99, bn_epsilon=1e-3):  # fmt: skip
    """Conv2D `name` (+ BatchNormalization `bn_name` when use_bn); no activation."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=not use_bn, name=name,
                            kernel_regularizer=regularizer, trainable=trainable)(x)  # fmt: skip
    return batch_norm(x, bn_name, use_bn, trainable and bn_trainable, bn_momentum, bn_epsilon)


def batch_norm(x, name, use_bn, trainable=True, momentum=0.99, epsilon=1e-3):
    if not use_bn:
        return x
    return keras.layers.BatchNormalization(axis=-1, momentum=momentum, epsilon=epsilon, name=name,
                                           trainable=trainable)(x)  # fmt: skip


def check_freeze_blocks(arch: str, freeze_blocks, valid) -> set[int]:
    """The freeze_blocks as a set; a block id the template does not have is a spec error."""
    frozen = {int(b) for b in freeze_blocks}
    bad = sorted(frozen - set(valid))
    if bad:
        raise TaoUserError(f"model_config.freeze_blocks: {arch} has blocks {min(valid)}..{max(valid)}, got {bad}")
    return frozen
