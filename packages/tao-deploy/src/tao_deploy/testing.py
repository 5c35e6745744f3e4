"""Tiny ONNX models built with onnx.helper, for tests, examples and smoke checks (no torch).

`tiny_cnn`: Conv-Relu-Conv-GlobalAveragePool-Flatten-Gemm with outputs `logits` and
`probs` (Softmax) and a `norm` output through LayerNormalization, dynamic batch.
`tiny_gridsample`: two inputs (image, sampling grid) and a GridSample between two Convs, the
shape of multi-scale deformable attention's sampling step.
`tiny_resnet`: a residual CNN block with frozen BatchNorms exported as Mul / Add (as a
detector's backbone is), MaxPool, then per-token linear layers named like a DETR head
(`head/proj`, `head/bbox_embed`); output `boxes`.
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


def tiny_resnet(size: int = 16, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def bn(name):  # frozen BatchNorm as PyTorch exports it: x * scale + shift, per channel
        return [numpy_helper.from_array((1 + 0.2 * rng.standard_normal((1, 8, 1, 1))).astype(np.float32), f"{name}_s"),
                numpy_helper.from_array((0.1 * rng.standard_normal((1, 8, 1, 1))).astype(np.float32), f"{name}_b")]

    inits = [_init(rng, "w0", (8, 3, 3, 3)), *bn("bn0"), _init(rng, "w1", (8, 8, 3, 3), 0.15), *bn("bn1"),
             _init(rng, "w2", (8, 8, 3, 3), 0.15), *bn("bn2"), _init(rng, "wp", (8, 16)), _init(rng, "bp", (16,), 0.1),
             _init(rng, "wb", (16, 4)), numpy_helper.from_array(np.array([0, 8, -1], np.int64), "tok_shape")]
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["c0"], name="stem/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c0", "bn0_s"], ["m0"], name="stem/bn/Mul"),
        helper.make_node("Add", ["m0", "bn0_b"], ["a0"], name="stem/bn/Add"),
        helper.make_node("Relu", ["a0"], ["r0"], name="stem/relu"),
        helper.make_node("MaxPool", ["r0"], ["p0"], name="stem/maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1"], ["c1"], name="block/conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c1", "bn1_s"], ["m1"], name="block/bn1/Mul"),
        helper.make_node("Add", ["m1", "bn1_b"], ["a1"], name="block/bn1/Add"),
        helper.make_node("Relu", ["a1"], ["r1"], name="block/relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="block/conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c2", "bn2_s"], ["m2"], name="block/bn2/Mul"),
        helper.make_node("Add", ["m2", "bn2_b"], ["a2"], name="block/bn2/Add"),
        helper.make_node("Add", ["a2", "p0"], ["res"], name="block/residual"),
        helper.make_node("Relu", ["res"], ["feat"], name="block/relu2"),
        helper.make_node("Reshape", ["feat", "tok_shape"], ["flat_c"], name="tokens/reshape"),  # (B, 8, HW)
        helper.make_node("Transpose", ["flat_c"], ["tok"], name="tokens/transpose", perm=[0, 2, 1]),  # (B, HW, 8)
        helper.make_node("MatMul", ["tok", "wp"], ["proj_mm"], name="head/proj/MatMul"),
        helper.make_node("Add", ["proj_mm", "bp"], ["proj"], name="head/proj/Add"),
        helper.make_node("Relu", ["proj"], ["proj_r"], name="head/relu"),
        helper.make_node("MatMul", ["proj_r", "wb"], ["box_mm"], name="head/bbox_embed/MatMul"),
        helper.make_node("Sigmoid", ["box_mm"], ["boxes"], name="head/sigmoid"),
    ]
    tokens = (size // 2) ** 2
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", tokens, 4])]
    return _model(nodes, inputs, outputs, inits)


def random_batches(shape, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` float32 batches in [0, 1): stand-ins for preprocessed calibration images."""
    rng = np.random.default_rng(seed)
    return [rng.random(shape, dtype=np.float32) for _ in range(count)]
