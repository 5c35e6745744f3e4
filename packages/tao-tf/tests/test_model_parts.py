"""Rasterizer targets, cost values, autoweighting, the LR schedule and the resnet templates."""

import math

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.proto.detectnet_v2.cost_function_pb2 import CostFunctionConfig
from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
from tao_tf.detectnet_v2.model.rasterizer import ClassRaster, ellipse_radii, rasterize
from tao_tf.detectnet_v2.model.schedule import soft_start_annealing_lr


def test_rasterizer_cells_by_hand():
    # 64x64 input -> 4x4 grid; box (16, 16, 48, 48) is grid (1, 1, 3, 3): centre (2, 2), half-size 1,
    # radius 0.4 raised to bbox_min_radius 1. Each of the four centre cells has 13 of its 16 samples
    # inside the unit circle (offsets 1/8, 3/8, 5/8, 7/8 from the centre).
    cov, bbox, norm = rasterize([[16, 16, 48, 48]], [0], 1, (64, 64), [ClassRaster()], deadzone=0.67)
    expected = np.zeros((4, 4))
    expected[1:3, 1:3] = 13 / 16
    np.testing.assert_allclose(cov[0], expected)
    np.testing.assert_allclose(norm[0], expected / 4.0)  # inv_bbox_area = 1 / max(4 * 1 * 1, 1)
    np.testing.assert_allclose(bbox[:, 1, 1], [0.5 / 35, 0.5 / 35, 31.5 / 35, 31.5 / 35], rtol=1e-6)
    np.testing.assert_allclose(bbox[:, 2, 2], [16.5 / 35, 16.5 / 35, 15.5 / 35, 15.5 / 35], rtol=1e-6)
    assert not bbox[:, 0, 0].any()


def test_rasterizer_radii_and_ignored_boxes():
    centre, radii, dead = ellipse_radii((0, 0, 10, 4), ClassRaster(), 0.67)
    assert centre == (5, 2)
    np.testing.assert_allclose(radii, (2.5, 1.0))  # 0.4*5 = 2, 0.4*2 = 0.8 < 1 -> both x1.25
    np.testing.assert_allclose(dead, (0.33 * 2.5 + 0.67 * 5, max(0.33 * 1 + 0.67 * 2, 1.0)))
    cov, _, _ = rasterize([[16, 16, 48, 48]], [-1], 1, (64, 64), [ClassRaster()])
    assert not cov.any()


def test_two_classes_go_to_their_own_channels():
    cov, bbox, _ = rasterize([[0, 0, 32, 32], [32, 32, 64, 64]], [1, 0], 2, (64, 64), [ClassRaster()] * 2)
    assert cov[1, :2, :2].sum() > 0 and cov[1, 2:, 2:].sum() == 0
    assert cov[0, 2:, 2:].sum() > 0 and cov[0, :2, :2].sum() == 0
    assert bbox[4:, :2, :2].any() and not bbox[:4, :2, :2].any()


def _cost_config(autoweighting=True):
    cfg = CostFunctionConfig(enable_autoweighting=autoweighting, min_objective_weight=1e-4, max_objective_weight=0.9999)
    t = cfg.target_classes.add(name="car", class_weight=1.0, coverage_foreground_weight=0.05)
    t.objectives.add(name="cov", initial_weight=1.0, weight_target=1.0)
    t.objectives.add(name="bbox", initial_weight=10.0, weight_target=1.0)
    return cfg


def test_cost_values_by_hand():
    import tensorflow as tf

    from tao_tf.detectnet_v2.model.cost import CostWeights, class_costs, total_cost

    cov_t = tf.constant([[[[1.0, 0.0]]]])
    cov_p = tf.constant([[[[0.8, 0.3]]]])
    bbox_t = np.zeros((1, 4, 1, 2), np.float32)
    bbox_t[0, :, 0, 0] = [1, -2, 3, 4]  # cell 0: |L|+|T|+|R|+|B| = 10 against a zero prediction
    bbox_t[0, :, 0, 1] = [5, 5, 5, 5]  # cell 1 has cov_norm 0: no bbox cost
    bbox_p = tf.zeros_like(bbox_t)
    norm = tf.constant([[[[0.5, 0.0]]]])
    costs = class_costs(cov_t, cov_p, tf.constant(bbox_t), bbox_p, norm, [0.05]).numpy()
    bce = (0.05 * -math.log(0.8 + 1e-5) + 0.95 * -math.log(0.7 + 1e-5)) / 2
    l1 = 10 * 0.5 / 2
    np.testing.assert_allclose(costs, [[bce, l1]], rtol=1e-5)
    w = CostWeights(_cost_config())
    np.testing.assert_allclose(w.objective_weights, [[1 / 11, 10 / 11]])
    total = float(total_cost(tf.constant(costs), w.class_weights, w.objective_weights))
    np.testing.assert_allclose(total, bce / 11 + 10 * l1 / 11, rtol=1e-5)


def test_autoweighting_update():
    from tao_tf.detectnet_v2.model.cost import CostWeights

    w = CostWeights(_cost_config())
    np.testing.assert_allclose(w.update([[2.0, 8.0]]), [[0.8, 0.2]])  # weight_target / cost, normalised
    np.testing.assert_allclose(w.update([[1.0, 1e9]]), [[0.9999, 1e-4]], rtol=1e-3)  # clamped
    fixed = CostWeights(_cost_config(autoweighting=False))
    np.testing.assert_allclose(fixed.update([[2.0, 8.0]]), [[1 / 11, 10 / 11]])


def test_soft_start_annealing_schedule():
    lo, hi = 5e-6, 5e-4
    assert soft_start_annealing_lr(0.0, lo, hi, 0.1, 0.7) == pytest.approx(lo)
    assert soft_start_annealing_lr(0.05, lo, hi, 0.1, 0.7) == pytest.approx(math.sqrt(lo * hi))
    assert soft_start_annealing_lr(0.1, lo, hi, 0.1, 0.7) == pytest.approx(hi)
    assert soft_start_annealing_lr(0.5, lo, hi, 0.1, 0.7) == pytest.approx(hi)
    assert soft_start_annealing_lr(0.85, lo, hi, 0.1, 0.7) == pytest.approx(math.sqrt(lo * hi))
    assert soft_start_annealing_lr(1.0, lo, hi, 0.1, 0.7) == pytest.approx(lo)
    with pytest.raises(TaoUserError, match="min_learning_rate"):
        soft_start_annealing_lr(0.5, 1e-3, 1e-4, 0.1, 0.7)


@pytest.mark.parametrize("layers", [10, 18, 34, 50, 101])
def test_resnet_templates_are_stride_16_with_named_heads(layers):
    from tao_tf.detectnet_v2.model.build import build_model

    mc = ModelConfig(arch="resnet", num_layers=layers, use_batch_norm=True, freeze_blocks=[0, 1])
    model = build_model(mc, 2, (3, 32, 48))
    assert model.input.name.startswith("input_1")
    assert model.get_layer("output_cov").output_shape == (None, 2, 2, 3)
    assert model.get_layer("output_bbox").output_shape == (None, 8, 2, 3)
    assert not model.get_layer("conv1").trainable and not model.get_layer("block_1a_conv_1").trainable
    assert model.get_layer("block_2a_conv_1").trainable
    out_channels = model.get_layer("block_4a_conv_shortcut").filters
    assert out_channels == (2048 if layers >= 50 else 512)
    cov, bbox = model(np.random.default_rng(0).random((1, 3, 32, 48), np.float32))
    assert (0 < cov.numpy()).all() and (cov.numpy() < 1).all()


def test_model_config_errors():
    from tao_tf.detectnet_v2.model.build import build_model

    with pytest.raises(TaoUserError, match="num_layers"):
        build_model(ModelConfig(arch="resnet", num_layers=12), 1, (3, 32, 32))
    with pytest.raises(TaoUserError, match="multiple of 16"):
        build_model(ModelConfig(arch="resnet", num_layers=10), 1, (3, 30, 32))
