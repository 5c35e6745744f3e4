"""Quantization-aware training (training_config.enable_qat) through tensorflow-model-optimization.

Convolutions, batch norms (folded into their convolution by tfmot's Conv-BN-ReLU patterns),
ReLUs and residual Adds get fake-quantized weights and activations (8-bit, tfmot's default
scheme); the layout transposes, the sigmoid and the bbox bias stay float. tf2onnx turns the
fake-quant ops into QuantizeLinear / DequantizeLinear pairs carrying the learned scales, so an
exported QAT model is already an INT8 Q/DQ graph.
"""

from __future__ import annotations

import contextlib

import tf_keras as keras

from tao_tf.detectnet_v2.model.build import CUSTOM_OBJECTS

_QUANTIZED = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Add, keras.layers.ReLU)


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras


def is_quantized(model) -> bool:
    return any(type(layer).__name__ == "QuantizeWrapperV2" for layer in model.layers)


def quantize_model(model):
    """A QAT copy of a float DetectNet_v2 model (weights kept)."""
    q = _tfmot()

    def annotate(layer):
        relu = isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "relu"
        if isinstance(layer, _QUANTIZED) or relu:
            return q.quantize_annotate_layer(layer)
        return layer.__class__.from_config(layer.get_config())

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with q.quantize_scope(CUSTOM_OBJECTS):
        return q.quantize_apply(annotated)


@contextlib.contextmanager
def load_scope():
    """Custom objects needed to load any DetectNet_v2 model file, QAT ones included."""
    with _tfmot().quantize_scope(CUSTOM_OBJECTS):
        yield
