"""A tiny ONNX with OneFormer's export contract, built with onnx.helper (no torch), for tests and
smoke checks of the deploy tasks:

    images       float32 (batch, 3, H, W) RGB 0..255 (normalised inside, as `oneformer export` does;
                 normalised=False builds TAO's variant, which takes pre-normalised images)
    task_tokens  float32 (batch, L)
    pred_logits  (batch, Q, C + 1);  pred_masks (batch, Q, H / 4, W / 4)

Inside: normalisation, a stride-4 Conv + Relu pixel feature, a two-layer task MLP (Gemm) added
to learned queries, LayerNormalization + MatMul for the classes, a query x pixel MatMul for the
masks, and a Softmax-weighted query mixing (so the FP16 pass meets the ops it keeps in float).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tao_core.processing.oneformer import PIXEL_MEAN, PIXEL_STD
from tao_core.tasks.oneformer_outputs import INPUT_RANGE, INPUT_RANGE_KEY


def tiny_oneformer(height: int = 32, width: int = 32, num_classes: int = 3, num_queries: int = 5,
                   task_len: int = 16, dim: int = 8, seed: int = 0, normalised: bool = True,
                   class_bias: dict[int, float] | None = None) -> onnx.ModelProto:
    """class_bias {class index: logit added}: makes the model favour those classes (e.g. so that an
    evaluation scores above zero)."""
    rng = np.random.default_rng(seed)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    h4, w4 = height // 4, width // 4
    inits = [
        numpy_helper.from_array(np.asarray(PIXEL_MEAN, np.float32).reshape(1, 3, 1, 1), "mean"),
        numpy_helper.from_array(np.asarray(PIXEL_STD, np.float32).reshape(1, 3, 1, 1), "std"),
        init("conv_w", (dim, 3, 4, 4)), init("conv_b", (dim,), 0.1),
        # token ids reach ~49407: a small first layer keeps the task embedding in range
        init("task_w1", (task_len, dim), 1e-4), init("task_b1", (dim,), 0.1),
        init("task_w2", (dim, dim)), init("task_b2", (dim,), 0.1),
        init("queries", (num_queries, dim), 1.0),
        numpy_helper.from_array(np.ones(dim, np.float32), "ln_scale"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "ln_bias"),
        init("cls_w", (dim, num_classes + 1), 1.0),
        numpy_helper.from_array(_bias(num_classes + 1, class_bias or {}), "cls_b"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0, dim, h4 * w4], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0, num_queries, h4, w4], np.int64), "mask_shape"),
    ]
    pixels = "images"
    nodes = []
    if normalised:
        nodes += [helper.make_node("Sub", ["images", "mean"], ["centred"], name="preprocess/Sub"),
                  helper.make_node("Div", ["centred", "std"], ["normed"], name="preprocess/Div")]
        pixels = "normed"
    nodes += [
        helper.make_node("Conv", [pixels, "conv_w", "conv_b"], ["feat_c"], name="backbone/conv", strides=[4, 4]),
        helper.make_node("Relu", ["feat_c"], ["feat"], name="backbone/relu"),
        helper.make_node("Gemm", ["task_tokens", "task_w1", "task_b1"], ["t1"], name="task_mlp/layers.0/Gemm"),
        helper.make_node("Relu", ["t1"], ["t1r"], name="task_mlp/relu"),
        helper.make_node("Gemm", ["t1r", "task_w2", "task_b2"], ["task"], name="task_mlp/layers.1/Gemm"),
        helper.make_node("Unsqueeze", ["task", "axis1"], ["task_q"], name="predictor/task_unsqueeze"),
        helper.make_node("Add", ["task_q", "queries"], ["q0"], name="predictor/query_add"),  # (B, Q, D)
        helper.make_node("Transpose", ["q0"], ["q0t"], name="predictor/transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q0", "q0t"], ["qq"], name="predictor/self_attn/MatMul"),  # (B, Q, Q)
        helper.make_node("Softmax", ["qq"], ["attn"], name="predictor/self_attn/Softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "q0"], ["q"], name="predictor/self_attn/mix"),
        helper.make_node("LayerNormalization", ["q", "ln_scale", "ln_bias"], ["qn"], name="predictor/norm", axis=-1),
        helper.make_node("MatMul", ["qn", "cls_w"], ["cls_mm"], name="predictor/class_embed/MatMul"),
        helper.make_node("Add", ["cls_mm", "cls_b"], ["pred_logits"], name="predictor/class_embed/Add"),
        helper.make_node("Reshape", ["feat", "flat_shape"], ["feat_flat"], name="predictor/flatten"),
        helper.make_node("MatMul", ["q", "feat_flat"], ["masks_flat"], name="predictor/mask_embed/MatMul"),
        helper.make_node("Reshape", ["masks_flat", "mask_shape"], ["pred_masks"], name="predictor/masks"),
    ]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, height, width]),
              helper.make_tensor_value_info("task_tokens", TensorProto.FLOAT, ["batch", task_len])]
    outputs = [helper.make_tensor_value_info("pred_logits", TensorProto.FLOAT, ["batch", num_queries, num_classes + 1]),
               helper.make_tensor_value_info("pred_masks", TensorProto.FLOAT, ["batch", num_queries, h4, w4])]
    graph = helper.make_graph(nodes, "tiny_oneformer", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tao_deploy.testing")
    model.ir_version = 8  # readable by every supported onnxruntime
    if normalised:
        helper.set_model_props(model, {INPUT_RANGE_KEY: INPUT_RANGE})
    onnx.checker.check_model(model)
    return model


def _bias(n: int, bias: dict[int, float]) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for k, v in bias.items():
        out[int(k)] = float(v)
    return out
