"""Filter pruning: counts from known norms, equalised groups, excluded heads, exact outputs when
only zero filters go."""

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
from tao_tf.detectnet_v2.model.build import build_model
from tao_tf.detectnet_v2.model.prune import _conv_groups, apply_pruning, plan_pruning, retained_count


def _model(all_projections=False, num_layers=10):
    mc = ModelConfig(arch="resnet", num_layers=num_layers, use_batch_norm=True, all_projections=all_projections)
    return build_model(mc, 1, (3, 32, 32))


def _set_filter_norms(layer, norms):
    kernel = np.zeros_like(layer.get_weights()[0])
    kernel[0, 0, 0, :] = norms  # one non-zero weight per filter: its L2 norm is |value|
    layer.set_weights([kernel, *layer.get_weights()[1:]])


def test_retained_count_rounding_and_minimum():
    norms = np.array([1.0] * 20 + [0.01] * 44)
    assert retained_count(norms, 0.1, 8, 16) == 24  # 20 above threshold -> next multiple of 8
    assert retained_count(norms, 2.0, 8, 16) == 16  # none above: the minimum
    assert retained_count(norms[:10], 2.0, 8, 16) == 10  # minimum capped at the layer size


def test_known_norms_choose_the_largest_filters():
    model = _model()
    norms = np.concatenate([np.full(20, 1.0), 0.01 * (1 + np.arange(44) / 100)])
    _set_filter_norms(model.get_layer("conv1"), norms)
    keep, reports = plan_pruning(model, threshold=0.1, granularity=8, min_filters=16)
    expected = np.concatenate([np.arange(20), 20 + np.arange(40, 44)])  # + the 4 largest small ones
    np.testing.assert_array_equal(keep["conv1"], expected)
    row = next(r for r in reports if r.name == "conv1")
    assert (row.kept, row.filters) == (24, 64) and row.threshold == 0.1


def test_groups_share_indices_heads_and_excluded_layers_stay_whole():
    model = _model(num_layers=18)
    groups = {frozenset(g) for g in _conv_groups(model)}
    # resnet18, no all_projections: block b adds its conv_2 to block a's sum (identity shortcut)
    assert frozenset({"block_1a_conv_2", "block_1a_conv_shortcut", "block_1b_conv_2"}) in groups
    assert frozenset({"block_2a_conv_2", "block_2a_conv_shortcut", "block_2b_conv_2"}) in groups
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith(("conv1", "block_")) and hasattr(layer, "filters"):
            _set_filter_norms(layer, rng.random(layer.filters) + 0.01)
    keep, reports = plan_pruning(model, threshold=0.5, granularity=8, min_filters=8, excluded=["block_3a_conv_1"])
    for group in groups:
        first = keep[next(iter(group))]
        assert all(np.array_equal(keep[n], first) for n in group)
    by_name = {r.name: r for r in reports}
    assert by_name["conv_cov"].excluded and by_name["conv_cov"].kept == by_name["conv_cov"].filters
    assert by_name["block_3a_conv_1"].kept == 256 and by_name["block_3a_conv_1"].excluded
    assert by_name["block_2a_conv_1"].kept < 128
    pruned = apply_pruning(model, keep)
    assert pruned.count_params() < model.count_params()
    cov, bbox = pruned(rng.random((1, 3, 32, 32), dtype=np.float32))
    assert cov.shape == (1, 1, 2, 2) and bbox.shape == (1, 4, 2, 2)
    with pytest.raises(TaoUserError, match="no layers named"):
        plan_pruning(model, excluded=["nope"])


def test_pruning_zero_filters_keeps_outputs_exactly():
    model = _model(all_projections=True)
    rng = np.random.default_rng(1)
    layer = model.get_layer("block_2a_conv_1")
    kernel, *rest = layer.get_weights()
    kernel[..., 64:] = 0.0  # half the filters are zero: with fresh BN (mean 0, beta 0) they output 0
    layer.set_weights([kernel, *rest])
    keep, _ = plan_pruning(model, threshold=1e-6, granularity=8, min_filters=8)
    assert len(keep["block_2a_conv_1"]) == 64
    pruned = apply_pruning(model, keep)
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    for a, b in zip(model(x, training=False), pruned(x, training=False), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
