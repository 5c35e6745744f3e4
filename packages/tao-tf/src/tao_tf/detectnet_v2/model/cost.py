"""DetectNet_v2 cost (TAO's cost_functions.py + CostAutoWeightHook; anchors-tao.md §4.4).

Per class c:
    cov cost  = mean over batch and cells of  w_t * BCE(t, p),  BCE with eps 1e-5,
                w_t = coverage_foreground_weight where t > 0.5, else 1 - coverage_foreground_weight
    bbox cost = mean over batch and cells of  sum_k |pred_k - target_k| * cov_norm
total = sum_c class_weight_c * (w_cov,c * cov_c + w_bbox,c * bbox_c), where class weights are
normalised to sum 1 over classes and objective weights to sum 1 within each class.
With enable_autoweighting the objective weights are re-set at each epoch end from the epoch's
summed costs: w ∝ weight_target / cost_sum, normalised, clamped to [min, max]_objective_weight.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tao_core.errors import TaoUserError

EPSILON = 1e-5
OBJECTIVES = ("cov", "bbox")


class CostWeights:
    """Class and objective weights from cost_function_config, and the autoweighting update."""

    def __init__(self, cost_function_config):
        classes = list(cost_function_config.target_classes)
        if not classes:
            raise TaoUserError("cost_function_config.target_classes: at least one class is needed")
        self.names = [t.name for t in classes]
        class_w = np.array([t.class_weight or 1.0 for t in classes], np.float64)
        self.class_weights = class_w / class_w.sum()
        self.foreground = np.array([t.coverage_foreground_weight for t in classes], np.float64)
        initial, targets = np.zeros((len(classes), 2)), np.zeros((len(classes), 2))
        for i, t in enumerate(classes):
            by_name = {o.name: o for o in t.objectives}
            for j, name in enumerate(OBJECTIVES):
                if name not in by_name:
                    raise TaoUserError(f"cost_function_config.target_classes.{i} ({t.name}): objective "
                                       f"'{name}' missing; both 'cov' and 'bbox' are needed")  # fmt: skip
                initial[i, j] = by_name[name].initial_weight
                targets[i, j] = by_name[name].weight_target
        self.objective_weights = initial / initial.sum(axis=1, keepdims=True)
        self.weight_targets = targets
        self.autoweighting = cost_function_config.enable_autoweighting
        self.min_w = cost_function_config.min_objective_weight or 1e-4
        self.max_w = cost_function_config.max_objective_weight or 0.9999

    def update(self, epoch_cost_sums: np.ndarray) -> np.ndarray:
        """Autoweighting at the end of an epoch; epoch_cost_sums [C, 2] (cov, bbox)."""
        if not self.autoweighting:
            return self.objective_weights
        sums = np.maximum(np.asarray(epoch_cost_sums, np.float64), 1e-12)
        w = self.weight_targets / sums
        w = w / w.sum(axis=1, keepdims=True)
        self.objective_weights = np.clip(w, self.min_w, self.max_w)
        return self.objective_weights


def class_costs(cov_true, cov_pred, bbox_true, bbox_pred, cov_norm, foreground):
    """[C, 2] per-class (cov, bbox) mean costs; tensors NCHW, foreground [C]."""
    fg = tf.reshape(tf.cast(foreground, cov_pred.dtype), (1, -1, 1, 1))
    bce = -(cov_true * tf.math.log(cov_pred + EPSILON) + (1.0 - cov_true) * tf.math.log(1.0 - cov_pred + EPSILON))
    weights = tf.where(cov_true > 0.5, fg * tf.ones_like(cov_true), (1.0 - fg) * tf.ones_like(cov_true))
    cov_cost = tf.reduce_mean(weights * bce, axis=(0, 2, 3))
    shape = tf.shape(bbox_pred)
    l1 = tf.abs(tf.reshape(bbox_pred - bbox_true, (shape[0], -1, 4, shape[2], shape[3])))
    bbox_cost = tf.reduce_mean(tf.reduce_sum(l1, axis=2) * cov_norm, axis=(0, 2, 3))
    return tf.stack([cov_cost, bbox_cost], axis=1)


def total_cost(costs, class_weights, objective_weights):
    """Weighted sum of the [C, 2] cost matrix."""
    w = tf.cast(class_weights, costs.dtype)[:, None] * tf.cast(objective_weights, costs.dtype)
    return tf.reduce_sum(costs * w)
