"""BatchNormalization moving statistics that match the weights they are saved and evaluated with.

Keras keeps `moving = m * moving + (1 - m) * batch` (m = 0.99 as in TAO's templates, 0.999 in
mobilenet_v2) starting from mean 0 / variance 1. DetectNet_v2 inputs are in [0, 1], so the true
feature variances are far below 1 and the leftover `m**t` of the initial 1.0 dominates the
inference-mode statistics for several hundred steps: a short training (a few epochs on a small
set, a fine-tuning run) evaluated and exported a model whose eval-mode outputs were far from
its training-mode ones (benchmarks/detectnet_v2_overfit.py: AP 0 while the weights scored 1.0).

`MomentumWarmup` makes the momentum of update t (0-based, counted over the whole training, so a
resumed run continues where it stopped) `min(m, t / (t + 1))`: the moving statistics are the
plain average of the batches seen for the first 1 / (1 - m) steps, then Keras's usual
exponential average with the layer's own momentum. The stored statistics are therefore an
unbiased estimate at every checkpoint, the layers stay plain BatchNormalization (export, QAT,
pruning untouched) and a long training ends exactly as before.

An exponential average still mixes in statistics of older weights (with m = 0.99, about the last
200 steps): in a short run those are the weights of the first, fast-moving steps. So before each
validation and checkpoint `recalibrate` re-estimates the statistics with the current weights:
the plain average of the batch statistics of a few training batches (forward passes only, no
weight changes; the "precise BN" re-estimation). Training then continues from those statistics.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf
import tf_keras as keras


class MomentumWarmup:
    """Step-dependent momentum for the model's BatchNormalization layers, and their re-estimation."""

    def __init__(self, model):
        # submodules reaches the layers inside tfmot's QuantizeWrapper too
        self.layers = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
        self.base = {id(layer): float(layer.momentum) for layer in self.layers}
        self.variables = {m: tf.Variable(m, trainable=False, dtype=tf.float32, name="bn_momentum")
                          for m in sorted(set(self.base.values()))}  # fmt: skip
        self._install()

    def _install(self):
        for layer in self.layers:
            # object.__setattr__: a Variable set through Keras's __setattr__ would become a layer weight
            object.__setattr__(layer, "momentum", self.variables[self.base[id(layer)]])

    def set_step(self, step: int) -> None:
        """Momentum of the update made by training step `step` (0 = the first step of the training)."""
        warm = step / (step + 1.0)
        for base, var in self.variables.items():
            var.assign(min(base, warm))

    def recalibrate(self, forward, num_batches: int) -> None:
        """Average the batch statistics of `num_batches` calls of `forward()` (a training-mode forward pass)."""
        for k in range(num_batches):
            for var in self.variables.values():
                var.assign(k / (k + 1.0))
            forward()

    @contextlib.contextmanager
    def plain(self):
        """The layers' own float momentum while saving or cloning (get_config must serialise it)."""
        for layer in self.layers:
            object.__setattr__(layer, "momentum", self.base[id(layer)])
        try:
            yield
        finally:
            self._install()
