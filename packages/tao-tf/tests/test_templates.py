"""The vgg, googlenet and mobilenet templates: TAO's layer names, stride-16 heads, a training step,
freeze_blocks / freeze_bn, pruning (depthwise and concatenation paths) and reloading the pruned file."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tao_core.errors import TaoUserError
from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
from tao_tf.detectnet_v2.model.build import build_model, check_qat
from tao_tf.detectnet_v2.model.cost import class_costs, total_cost
from tao_tf.detectnet_v2.model.io import load_model, save_model
from tao_tf.detectnet_v2.model.prune import apply_pruning, plan_pruning

SHAPE = (3, 96, 128)  # the tests' spec size: a 6 x 8 output grid

# arch, num_layers, extra ModelConfig fields, layer names TAO gives, the frozen block and one of its
# convolutions, the convolution whose filters are half zeroed before pruning
TEMPLATES = {
    "vgg16": ("vgg", 16, {}, ["block_1a_conv_1", "block_1a_bn_1", "block_5c_conv_1", "block_5c_relu"],
              (2, "block_2b_conv_1"), "block_3a_conv_1"),
    "googlenet": ("googlenet", 0, {}, ["conv1", "bn_conv1", "conv2_reduce", "inception_3a_5x5_reduce",
                                       "inception_4e_pool_proj_bn", "inception_5b_output"],
                  (3, "inception_4a_3x3"), "inception_3a_3x3"),
    "mobilenet_v1": ("mobilenet_v1", 0, {}, ["conv1", "conv1_bn", "conv_dw_1", "conv_dw_11_bn", "conv_pw_relu_11"],
                     (4, "conv_pw_4"), "conv_pw_2"),
    "mobilenet_v2": ("mobilenet_v2", 0, {"all_projections": True},
                     ["conv1", "bn_conv1", "expanded_conv_depthwise", "block_1_expand", "block_12_add",
                      "block_12_projected_inputs"], (7, "block_6_expand"), "block_3_expand"),
}  # fmt: skip


def _config(arch, num_layers, extra, **more):
    return ModelConfig(arch=arch, num_layers=num_layers, use_batch_norm=True, **extra, **more)


def _zero_half(layer):
    kernel, *rest = layer.get_weights()
    kernel[..., kernel.shape[-1] // 2 :] = 0.0
    layer.set_weights([kernel, *rest])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_builds_trains_prunes_and_reloads(name, tmp_path):
    arch, num_layers, extra, layer_names, (block, frozen_conv), pruned_conv = TEMPLATES[name]
    model = build_model(_config(arch, num_layers, extra, freeze_blocks=[block]), 1, SHAPE)
    names = {layer.name for layer in model.layers}
    assert set(layer_names) <= names, sorted(set(layer_names) - names)
    x = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    cov, bbox = model(x, training=False)
    assert cov.shape == (2, 1, 6, 8) and bbox.shape == (2, 4, 6, 8)
    assert 0.0 < float(tf.reduce_min(cov)) and float(tf.reduce_max(cov)) < 1.0  # sigmoid
    assert not model.get_layer(frozen_conv).trainable and model.get_layer(pruned_conv).trainable

    # zero filters pruned (fresh batch norms map them to 0): a smaller model with the same outputs,
    # saved and reloaded as load_graph reads it
    _zero_half(model.get_layer(pruned_conv))
    keep, _ = plan_pruning(model, threshold=1e-6, granularity=8, min_filters=8)
    pruned = apply_pruning(model, keep)
    assert pruned.count_params() < model.count_params()
    assert pruned.get_layer(pruned_conv).filters == model.get_layer(pruned_conv).filters // 2
    path = str(tmp_path / "pruned.tlt")
    save_model(pruned, path, "k", {"classes": ["raccoon"], "epoch": 0})
    reloaded, meta, _ = load_model(path, "k")
    assert reloaded.count_params() == pruned.count_params() and meta["classes"] == ["raccoon"]
    for a, b in zip(model(x, training=False), reloaded(x, training=False), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)

    # one optimisation step with the real cost: the trainable weights move, the frozen block does not
    targets = {"cov": np.zeros((2, 1, 6, 8), np.float32), "bbox": np.zeros((2, 4, 6, 8), np.float32)}
    targets["cov"][:, :, 2:4, 3:5] = 1.0
    frozen_before = model.get_layer(frozen_conv).get_weights()[0].copy()
    head_before = model.get_layer("conv_cov").get_weights()[0].copy()
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        cov, bbox = model(x, training=True)
        costs = class_costs(targets["cov"], cov, targets["bbox"], bbox, targets["cov"] / 4, tf.constant([0.05]))
        loss = total_cost(costs, tf.constant([1.0]), tf.constant([[0.5, 0.5]]))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    assert np.isfinite(float(loss))
    np.testing.assert_array_equal(model.get_layer(frozen_conv).get_weights()[0], frozen_before)
    assert not np.allclose(model.get_layer("conv_cov").get_weights()[0], head_before)


def test_vgg19_depth_and_pooling():
    pooled = build_model(ModelConfig(arch="vgg", num_layers=19, use_pooling=True), 2, (3, 64, 64))
    convs = [layer.name for layer in pooled.layers if layer.name.endswith("_conv_1")]
    assert len(convs) == 16 and "block_5d_conv_1" in convs and "block4_pool" in [la.name for la in pooled.layers]
    cov, bbox = pooled(np.zeros((1, 3, 64, 64), np.float32))
    assert cov.shape == (1, 2, 4, 4) and bbox.shape == (1, 8, 4, 4)
    # no batch norm: the convolutions carry biases; 16 convolutions' weights + the two 1x1 heads
    assert not any("bn" in layer.name for layer in pooled.layers)
    assert pooled.count_params() == 20024384 + (512 * 2 + 2) + 512 * 8 + 8


def test_template_spec_errors():
    with pytest.raises(TaoUserError, match="model_config.num_layers: vgg supports"):
        build_model(ModelConfig(arch="vgg", num_layers=18), 1, SHAPE)
    with pytest.raises(TaoUserError, match="freeze_blocks: vgg has blocks 1..5, got \\[0\\]"):
        build_model(ModelConfig(arch="vgg", num_layers=16, freeze_blocks=[0]), 1, SHAPE)
    with pytest.raises(TaoUserError, match="freeze_blocks: mobilenet_v2 has blocks 0..13, got \\[14\\]"):
        build_model(ModelConfig(arch="mobilenet_v2", freeze_blocks=[14]), 1, SHAPE)
    with pytest.raises(TaoUserError, match="'squeezenet' is not a DetectNet_v2 template"):
        build_model(ModelConfig(arch="squeezenet"), 1, SHAPE)
    for arch in ("mobilenet_v1", "mobilenet_v2"):
        with pytest.raises(TaoUserError, match=f"enable_qat: .* not supported for model_config.arch '{arch}'"):
            check_qat(ModelConfig(arch=arch))
    check_qat(ModelConfig(arch="googlenet"))  # allowed


def test_freeze_bn_keeps_statistics():
    model = build_model(ModelConfig(arch="mobilenet_v1", use_batch_norm=True, freeze_bn=True), 1, (3, 32, 32))
    bns = [layer for layer in model.layers if "bn" in layer.name]
    assert bns and not any(layer.trainable for layer in bns)
    before = [layer.get_weights() for layer in bns]
    model(np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32), training=True)
    for layer, old in zip(bns, before, strict=True):
        for a, b in zip(layer.get_weights(), old, strict=True):
            np.testing.assert_array_equal(a, b)
