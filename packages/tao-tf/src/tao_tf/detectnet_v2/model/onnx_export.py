"""Keras DetectNet_v2 -> ONNX with the tensor names DeepStream configs use.

The graph has one input `input_1` [N, C, H, W] (N dynamic unless a static batch is asked for)
and two outputs `output_cov/Sigmoid` [N, classes, H/16, W/16] and `output_bbox/BiasAdd`
[N, 4*classes, H/16, W/16], converted by tf2onnx from the tf_keras model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

INPUT_NAME = "input_1"
OUTPUT_NAMES = {"output_cov": "output_cov/Sigmoid", "output_bbox": "output_bbox/BiasAdd"}


def keras_to_onnx(model, opset: int = 12, batch_size: int | None = None):
    """An onnx.ModelProto of `model` with TAO's input / output names."""
    import tf2onnx

    shape = (batch_size if batch_size and batch_size > 0 else None, *model.input_shape[1:])
    signature = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    rename = {}
    for out in proto.graph.output:
        base = out.name.split(":")[0].split("/")[0]
        if base in OUTPUT_NAMES:
            rename[out.name] = OUTPUT_NAMES[base]
    missing = set(OUTPUT_NAMES.values()) - set(rename.values())
    if missing:
        raise RuntimeError(f"tf2onnx graph lacks outputs {sorted(missing)}; got {[o.name for o in proto.graph.output]}")
    for node in proto.graph.node:
        node.output[:] = [rename.get(n, n) for n in node.output]
        node.input[:] = [rename.get(n, n) for n in node.input]
    for out in proto.graph.output:
        out.name = rename[out.name]
    # order outputs as DeepStream lists them: coverage first
    outputs = sorted(proto.graph.output, key=lambda o: o.name != OUTPUT_NAMES["output_cov"])
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    return proto


def onnx_runtime_parity(onnx_bytes: bytes, model, images: np.ndarray) -> dict[str, float]:
    """Max absolute difference of ONNX Runtime vs Keras on `images` [N, C, H, W], per output."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {INPUT_NAME: images}), strict=True))
    cov, bbox = (t.numpy() for t in model(images, training=False))
    return {
        OUTPUT_NAMES["output_cov"]: float(np.abs(got[OUTPUT_NAMES["output_cov"]] - cov).max()),
        OUTPUT_NAMES["output_bbox"]: float(np.abs(got[OUTPUT_NAMES["output_bbox"]] - bbox).max()),
    }
