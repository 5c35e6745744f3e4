"""Filter pruning of a DetectNet_v2 Keras model (TAO's min_weight / L2 method, anchors-tao.md §4.8).

For every Conv2D the L2 norm of each output filter (over kernel height, width and input
channels) is normalised ('max': divided by the layer's largest; 'L2': divided by the vector's
L2 norm and multiplied by the filter count) and filters with a normalised norm above
`threshold` are kept, at least `min_filters` (capped at the layer size), rounded up to a
multiple of `granularity`, keeping the largest norms. Convolutions whose outputs meet in an
element-wise Add (a ResNet stage's residual chain) keep the same filter indices: their
normalised norms are merged by the equalization criterion (union = max, intersection = min,
arithmetic_mean, geometric_mean) before choosing. The heads feeding the model outputs and the
`excluded` layers (with everything equalised with them) are never pruned. The pruned model is
rebuilt layer by layer with sliced weights (BatchNormalization and depthwise convolutions follow
their input channels, a Concatenate keeps each input's kept channels at its offset), so it runs,
saves and retrains (model_config.load_graph) like the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tf_keras as keras

from tao_core.errors import TaoUserError

EQUALIZATION = {
    "union": lambda s: np.max(s, axis=0),
    "intersection": lambda s: np.min(s, axis=0),
    "arithmetic_mean": lambda s: np.mean(s, axis=0),
    "geometric_mean": lambda s: np.exp(np.mean(np.log(np.maximum(s, 1e-12)), axis=0)),
}
# layers whose output channels are their input channels (a depthwise convolution with multiplier 1 too:
# pruning the convolution before it removes the same depthwise filters, as TAO's depthwise equalisation does)
_PASS_THROUGH = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU,
                 keras.layers.Dropout, keras.layers.MaxPooling2D, keras.layers.ZeroPadding2D,
                 keras.layers.DepthwiseConv2D)  # fmt: skip


@dataclass
class LayerReport:
    name: str
    filters: int
    kept: int
    threshold: float  # the normalised-norm threshold applied
    smallest_kept_norm: float
    excluded: bool


def _inbound(layer) -> list:
    node = layer._inbound_nodes[0]
    layers = node.inbound_layers
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


def _producer(layer):
    """The Conv2D or Add whose channels `layer`'s output carries (through BN / activations)."""
    while isinstance(layer, _PASS_THROUGH):
        layer = _inbound(layer)[0]
    return layer


def _conv_groups(model) -> list[list[str]]:
    """Convolutions that must keep identical output channels (union-find over Add inputs)."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            find(layer.name)
        if isinstance(layer, keras.layers.Add):
            members = [_producer(p).name for p in _inbound(layer)]
            for m in members:
                union(layer.name, m)
    groups: dict[str, list[str]] = {}
    convs = {lay.name for lay in model.layers if isinstance(lay, keras.layers.Conv2D)}
    for name in parent:
        if name in convs:
            groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def _normalised_norms(kernel: np.ndarray, normalizer: str) -> np.ndarray:
    norms = np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0))
    if normalizer == "max":
        return norms / max(norms.max(), 1e-12)
    if normalizer == "L2":
        return norms / max(np.linalg.norm(norms), 1e-12) * len(norms)
    if normalizer == "off":
        return norms
    raise TaoUserError(f"-n/--normalizer must be max, L2 or off, got {normalizer!r}")


def retained_count(norms: np.ndarray, threshold: float, granularity: int, min_filters: int) -> int:
    total = len(norms)
    count = max(min(min_filters, total), int((norms > threshold).sum()))
    count = int(math.ceil(count / granularity) * granularity)
    return min(count, total)


def plan_pruning(model, threshold=0.1, normalizer="max", equalization="union", granularity=8, min_filters=16,
                 excluded=()) -> tuple[dict[str, np.ndarray], list[LayerReport]]:  # fmt: skip
    """Kept output-filter indices per Conv2D, and a report line per layer."""
    if equalization not in EQUALIZATION:
        raise TaoUserError(f"-eq: expected one of {sorted(EQUALIZATION)}, got {equalization!r}")
    names = {lay.name for lay in model.layers}
    unknown = sorted(set(excluded) - names)
    if unknown:
        raise TaoUserError(f"-el/--excluded_layers: no layers named {unknown} in the model")
    heads = set()
    for out in model.outputs:  # output_cov <- permute <- conv_cov: the head convolutions stay whole
        layer = out._keras_history.layer
        while not isinstance(layer, keras.layers.Conv2D):
            layer = _inbound(layer)[0]
        heads.add(layer.name)
    never = heads | set(excluded)
    keep, reports = {}, []
    for group in _conv_groups(model):
        kernels = [model.get_layer(n).get_weights()[0] for n in group]
        total = kernels[0].shape[-1]
        stats = np.stack([_normalised_norms(k, normalizer) for k in kernels])
        merged = EQUALIZATION[equalization](stats)
        frozen = bool(never & set(group))
        count = total if frozen else retained_count(merged, threshold, granularity, min_filters)
        idx = np.sort(np.argsort(-merged, kind="stable")[:count])
        for n in group:
            keep[n] = idx
            reports.append(LayerReport(n, total, count, threshold, float(merged[idx].min()), frozen))
    order = {lay.name: i for i, lay in enumerate(model.layers)}
    reports.sort(key=lambda r: order[r.name])
    return keep, reports


def _slice_weights(layer, weights, in_idx, out_idx):
    if isinstance(layer, keras.layers.Conv2D):
        kernel = weights[0]
        if in_idx is not None:
            kernel = kernel[:, :, in_idx, :]
        if out_idx is not None:
            kernel = kernel[..., out_idx]
        rest = [w[out_idx] if out_idx is not None else w for w in weights[1:]]
        return [kernel, *rest]
    if isinstance(layer, keras.layers.DepthwiseConv2D) and in_idx is not None:
        return [weights[0][:, :, in_idx, :], *[w[in_idx] for w in weights[1:]]]  # kernel [kh, kw, in, 1], bias
    if isinstance(layer, keras.layers.BatchNormalization) and in_idx is not None:
        return [w[in_idx] for w in weights]
    return weights


def _concat_channels(parents, kept) -> np.ndarray | None:
    """Kept channels of a channels-last Concatenate: each input's kept indices, offset by the inputs before it."""
    if all(k is None for k in kept):
        return None
    out, offset = [], 0
    for parent, k in zip(parents, kept, strict=True):
        width = int(parent.output_shape[-1])
        out.append(offset + (np.arange(width) if k is None else k))
        offset += width
    return np.concatenate(out)


def apply_pruning(model, keep: dict[str, np.ndarray]):
    """A new model with the Conv2D outputs reduced to `keep` (and everything downstream adapted)."""
    tensors, channels = {}, {}  # layer name -> output tensor / kept channel indices (None = all)
    new_layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            inp = keras.Input(shape=layer.input_shape[0][1:] if isinstance(layer.input_shape, list)
                              else layer.input_shape[1:], name=layer.name)  # fmt: skip
            tensors[layer.name], channels[layer.name] = inp, None
            continue
        parents = _inbound(layer)
        in_idx = channels[parents[0].name]
        config = layer.get_config()
        out_idx = in_idx
        if isinstance(layer, keras.layers.Conv2D):
            out_idx = keep.get(layer.name)
            if out_idx is not None and len(out_idx) == layer.filters:
                out_idx = None
            if out_idx is not None:
                config["filters"] = len(out_idx)
        elif isinstance(layer, keras.layers.Add):
            kept = [channels[p.name] for p in parents]
            if any((k is None) != (kept[0] is None) or (k is not None and not np.array_equal(k, kept[0]))
                   for k in kept):  # fmt: skip
                raise RuntimeError(f"pruning left the inputs of {layer.name} with different channels")
        elif isinstance(layer, keras.layers.Concatenate):
            if layer.axis not in (-1, 3):
                raise TaoUserError(f"cannot prune into {layer.name}: it concatenates on axis {layer.axis}")
            out_idx = _concat_channels(parents, [channels[p.name] for p in parents])
        elif isinstance(layer, keras.layers.DepthwiseConv2D) and layer.depth_multiplier != 1 and in_idx is not None:
            raise TaoUserError(f"cannot prune into {layer.name} (depth_multiplier {layer.depth_multiplier}): "
                               "exclude the convolution feeding it (-el)")  # fmt: skip
        elif isinstance(layer, keras.layers.Permute) and in_idx is not None:
            raise TaoUserError(f"cannot prune into {layer.name}: exclude the convolution feeding it (-el)")
        new = type(layer).from_config(config)
        inputs = [tensors[p.name] for p in parents]
        tensors[layer.name] = new(inputs if len(inputs) > 1 else inputs[0])
        channels[layer.name] = out_idx
        new.set_weights(_slice_weights(layer, layer.get_weights(), in_idx, out_idx))
        new_layers.append(new)
    inputs = [tensors[t._keras_history.layer.name] for t in model.inputs]
    outputs = [tensors[t._keras_history.layer.name] for t in model.outputs]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name + "_pruned")


def report_text(reports: list[LayerReport], before: int, after: int) -> str:
    lines = [f"{'layer':<28} {'kept':>6} / {'filters':<7} {'threshold':>9} {'min kept norm':>13}"]
    for r in reports:
        note = "  (excluded)" if r.excluded else ""
        lines.append(f"{r.name:<28} {r.kept:>6} / {r.filters:<7} {r.threshold:>9.4f} {r.smallest_kept_norm:>13.4f}{note}")
    lines.append(f"Parameters: {before} before, {after} after pruning ({after / before:.1%} kept)")
    return "\n".join(lines)
