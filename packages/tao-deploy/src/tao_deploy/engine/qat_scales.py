"""The learned INT8 scales of a quantization-aware-trained (QAT) ONNX, and its float graph.

A QAT model exported to ONNX carries its fake-quantization as QuantizeLinear ->
DequantizeLinear pairs on activations (tf2onnx turns tfmot's FakeQuantWithMinMaxVars into
them; PyTorch's fake quant exports the same way). TensorRT's calibration cache, and this
package's INT8 pass, want instead one symmetric range per tensor. `learned_scales` reads them:

    float_model, amax = learned_scales(qat_model)   # amax: tensor name -> max |x| the pair represents
    write_cache("cal.bin", amax, "entropy")         # TensorRT-format cache (amax / 127 per line)

For a pair with scale s and zero point z the representable values are s * (q - z), q in the
integer range of the type (uint8: 0..255, int8: -128..127), so the symmetric range that covers
them is amax = s * max(z - qmin, qmax - z) (uint8 z = 128: 128 s; int8 z = 0: 128 s). The pairs
are removed (each consumer of the DequantizeLinear reads the QuantizeLinear's input), so the
float graph has the trained weights and the tensor names the ranges are keyed by. Pairs on
constants (weights) are folded: the weight keeps its fake-quantized values, which a per-channel
symmetric requantization reproduces.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

log = logging.getLogger(__name__)

_QRANGE = {np.dtype("uint8"): (0, 255), np.dtype("int8"): (-128, 127)}


def has_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph holds QuantizeLinear nodes (a QAT or already quantized model)."""
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def learned_scales(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, float]]:
    """(the float graph without its Q/DQ pairs, amax per activation tensor) of a QAT ONNX.

    Only per-tensor activation pairs become ranges; a pair whose input is a constant is folded
    into that constant (dequantized values).
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {o: n for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    rename: dict[str, str] = {}  # DequantizeLinear output -> tensor the pair stands for
    drop: set[int] = set()
    amax: dict[str, float] = {}
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producer.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        scale = value(q.input[1])
        zero = value(q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
        if scale is None or zero is None:
            continue
        source = q.input[0]
        data = value(source)
        if data is not None:  # a fake-quantized weight: keep its dequantized values
            folded[node.output[0]] = _dequantize(data, scale, zero, q)
        else:
            if np.size(scale) != 1:
                continue  # per-channel activation ranges have no cache form: leave the pair
            lo, hi = _QRANGE.get(np.asarray(zero).dtype, (-128, 127))
            z = float(np.asarray(zero).ravel()[0])
            a = float(np.asarray(scale).ravel()[0]) * max(z - lo, hi - z)
            amax[source] = max(amax.get(source, 0.0), a)
            rename[node.output[0]] = source
        drop.add(id(node))
        drop.add(id(q))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    kept = [n for n, orig in zip(g.node, graph.node, strict=True) if id(orig) not in drop]
    del g.node[:]
    g.node.extend(kept)
    for name, arr in folded.items():
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), name))
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
    outputs = {o.name for o in g.output}
    for dq_out, src in rename.items():  # a graph output read through a pair keeps its name
        if dq_out in outputs:
            g.node.append(onnx.helper.make_node("Identity", [src], [dq_out], name=f"{dq_out}_qat_identity"))
    _drop_unused_initializers(g)
    log.info("QAT model: %d activation ranges learned, %d fake-quantized constants folded", len(amax), len(folded))
    return out, amax


def _dequantize(data, scale, zero, q) -> np.ndarray:
    axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
    s, z = np.asarray(scale, np.float32), np.asarray(zero).astype(np.float32)
    if s.ndim == 1 and s.size > 1:
        shape = [1] * data.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    lo, hi = _QRANGE.get(np.asarray(zero).dtype, (-128, 127))
    qv = np.clip(np.round(np.asarray(data, np.float32) / s) + z, lo, hi)
    return (qv - z) * s


def _drop_unused_initializers(g) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
