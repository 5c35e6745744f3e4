"""Multi-scale deformable attention as TensorRT's `MultiscaleDeformableAttnPlugin_TRT` node.

`export.on_cpu: False` exports every MSDeformAttn's sampling core as ONE custom ONNX node that
TensorRT's ONNX parser maps to the plugin of the same name in its plugin registry (TensorRT
OSS `plugin/multiscaleDeformableAttnPlugin`, loaded by `trt.init_libnvinfer_plugins`), instead
of the GridSample sub-graph of the pure-PyTorch core. The graph then runs only in TensorRT:
ONNX Runtime has no such kernel.

The node, as the plugin and the parser expect it:
    op_type     MultiscaleDeformableAttnPlugin_TRT   (the parser looks plugins up by op_type)
    domain      "nvidia"  (TAO's choice; the parser ignores the domain, onnx.checker needs a
                non-default one for an op it does not know)
    attributes  plugin_version "1", plugin_namespace ""   (the parser's lookup keys)
    inputs      value               float (N, S, M, D)
                spatial_shapes      int32 (L, 2)    the plugin only takes int32 here
                level_start_index   int32 (L,)
                sampling_locations  float (N, Lq, M, L, P, 2)  normalised (x, y)
                attention_weights   float (N, Lq, M, L, P)     softmax over L*P already applied
    output      float (N, Lq, M, D); the exporter reshapes it to (N, Lq, M*D) after the node.

In PyTorch the function computes exactly `ms_deform_attn_core`, so a model switched to this
kernel gives the same outputs; only the exported graph differs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from tao_pytorch.detr.msda import MSDA_KERNELS, MSDeformAttn, ms_deform_attn_core, spatial_shapes_list

PLUGIN_OP = "MultiscaleDeformableAttnPlugin_TRT"
PLUGIN_DOMAIN = "nvidia"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
KERNEL_NAME = "trt_plugin"


class MSDAPluginFunction(torch.autograd.Function):
    """Forward = the PyTorch core; `symbolic` = the plugin node (legacy TorchScript exporter)."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        n, _, m, d = value.shape
        lq = sampling_locations.shape[1]
        out = ms_deform_attn_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return out.view(n, lq, m, d)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        out = g.op(
            f"{PLUGIN_DOMAIN}::{PLUGIN_OP}",
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            plugin_version_s=PLUGIN_VERSION,
            plugin_namespace_s=PLUGIN_NAMESPACE,
        )
        # Tell the exporter the output type/shape (N, Lq, M, D) so the ops after it are typed.
        sizes = _sizes(value)
        loc_sizes = _sizes(sampling_locations)
        if sizes is not None and loc_sizes is not None:
            out.setType(value.type().with_sizes([sizes[0], loc_sizes[1], sizes[2], sizes[3]]))
        return out


def _sizes(v):
    try:
        return v.type().varyingSizes()
    except RuntimeError:
        return None


def ms_deform_attn_trt_plugin(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """`ms_deform_attn_core`'s signature and result, exported as the TensorRT plugin node."""
    n, _, m, d = value.shape
    lq = sampling_locations.shape[1]
    shapes = torch.tensor(spatial_shapes_list(spatial_shapes), dtype=torch.int32, device=value.device)
    if isinstance(level_start_index, torch.Tensor):
        starts = level_start_index.to(torch.int32)
    else:
        starts = torch.tensor(list(level_start_index), dtype=torch.int32, device=value.device)
    out = MSDAPluginFunction.apply(value, shapes, starts, sampling_locations, attention_weights)
    return out.reshape(n, lq, m * d)


MSDA_KERNELS[KERNEL_NAME] = ms_deform_attn_trt_plugin


@contextlib.contextmanager
def msda_kernel(model: nn.Module, kernel: str) -> Iterator[int]:
    """Switch every MSDeformAttn of `model` to `kernel` inside the block (restored after);
    yields how many modules were switched."""
    if kernel not in MSDA_KERNELS:
        raise ValueError(f"unknown MSDA kernel {kernel!r}; registered: {sorted(MSDA_KERNELS)}")
    modules = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    saved = [m.kernel for m in modules]
    for m in modules:
        m.kernel = kernel
    try:
        yield len(modules)
    finally:
        for m, k in zip(modules, saved, strict=True):
            m.kernel = k
