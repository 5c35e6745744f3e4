"""Tiny ONNX models built with onnx.helper, for tests, examples and smoke checks (no torch).

`tiny_cnn`: Conv-Relu-Conv-GlobalAveragePool-Flatten-Gemm with outputs `logits` and
`probs` (Softmax) and a `norm` output through LayerNormalization, dynamic batch.
`tiny_gridsample`: two inputs (image, sampling grid) and a GridSample between two Convs, the
shape of multi-scale deformable attention's sampling step.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tao_deploy.testing")
    model.ir_version = 8  # readable by every supported onnxruntime
    onnx.checker.check_model(model)
    return model


def tiny_cnn(channels: int = 3, size: int = 16, classes: int = 5, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        _init(rng, "w1", (8, channels, 3, 3)),
        _init(rng, "b1", (8,), 0.1),
        _init(rng, "w2", (16, 8, 3, 3)),
        _init(rng, "b2", (16,), 0.1),
        _init(rng, "wg", (16, classes)),
        _init(rng, "bg", (classes,), 0.1),
        numpy_helper.from_array(np.ones(classes, np.float32), "ln_scale"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "ln_bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
        helper.make_node("LayerNormalization", ["logits", "ln_scale", "ln_bias"], ["norm"], name="layernorm", axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, size, size])]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", classes]) for n in ("logits", "probs", "norm")
    ]
    return _model(nodes, inputs, outputs, inits)


def tiny_gridsample(size: int = 16, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [_init(rng, "w1", (4, 3, 3, 3)), _init(rng, "w2", (2, 4, 1, 1))]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["feat"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("GridSample", ["feat", "grid"], ["sampled"], name="grid_sample", align_corners=0),
        helper.make_node("Conv", ["sampled", "w2"], ["out"], name="conv2"),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size]),
        helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["batch", 8, 8, 2]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 2, 8, 8])]
    return _model(nodes, inputs, outputs, inits)


def random_batches(shape, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` float32 batches in [0, 1): stand-ins for preprocessed calibration images."""
    rng = np.random.default_rng(seed)
    return [rng.random(shape, dtype=np.float32) for _ in range(count)]
