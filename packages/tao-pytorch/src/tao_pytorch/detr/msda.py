"""Multi-scale deformable attention (Zhu et al., Deformable DETR, 2021).

Each query looks at `n_points` sampled locations per head and per feature level, around its
reference point; the sampled values (bilinear) are mixed with softmax weights predicted from the
query. The core sampling is done here in plain PyTorch with `F.grid_sample`, which runs on CPU
and GPU, has autograd, and exports to the standard ONNX GridSample op (opset >= 16).

Kernels: `MSDA_KERNELS` maps a name to a function with the signature of `ms_deform_attn_core`;
`MSDeformAttn(kernel=...)` picks one by name at call time:
    "pytorch"     `ms_deform_attn_core` below: grid_sample per level; runs anywhere, exports to ONNX
    "sparse_cpu"  `msda_cpu.sparse_msda`: the same numbers as one sparse product per pass, with a
                  hand-written backward; several times faster on CPU (benchmarks/msda.py)
    "trt_plugin"  registered by `msda_trt`: exports as TensorRT's MSDA plugin node
    "auto"        (the default) "sparse_cpu" for fp32 / fp64 tensors on CPU in eager mode, else
                  "pytorch": on GPU, and whenever the model is being traced, compiled or exported,
                  so exported graphs always hold the standard GridSample op.

Parameter names (`sampling_offsets`, `attention_weights`, `value_proj`, `output_proj`) and their
initialisation follow fundamentalvision/Deformable-DETR, so its checkpoints load unchanged.
"""

import math
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.detr.msda_cpu import DTYPES as SPARSE_DTYPES
from tao_pytorch.detr.msda_cpu import sparse_msda
from tao_pytorch.detr.msda_cpu import supports as sparse_supports

SpatialShapes = Union[torch.Tensor, Sequence[Tuple[int, int]]]


def spatial_shapes_list(spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    """(L, 2) tensor or sequence of (H, W) -> list of python (H, W) ints."""
    if isinstance(spatial_shapes, torch.Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(int(h), int(w)) for h, w in spatial_shapes]


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of `value` at `sampling_locations`.

    value               (N, S, M, D)        S = sum of H*W over levels, M heads, D channels per head
    spatial_shapes      (L, 2) or [(H, W)]  level sizes, in the order the levels are flattened in S
    level_start_index   (L,)                start of each level in S (unused here: the split sizes
                                            come from spatial_shapes; kept for fused kernels)
    sampling_locations  (N, Lq, M, L, P, 2) (x, y) normalised to [0, 1] over each level's map
    attention_weights   (N, Lq, M, L, P)    already softmax-normalised over L*P
    returns             (N, Lq, M*D)

    Sampling convention (same as the CUDA kernel of the reference): pixel centres sit at
    (i + 0.5) / W, bilinear interpolation, zero outside the map (align_corners=False, zeros padding).
    """
    del level_start_index
    shapes = spatial_shapes_list(spatial_shapes)
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    value_levels = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = value_levels[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # (N*M, D, Lq, P)
    # (N, Lq, M, L, P) -> (N*M, 1, Lq, L*P)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # (N*M, D, Lq)
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def ms_deform_attn_sparse(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """`ms_deform_attn_core` computed by `msda_cpu.sparse_msda` (CPU, fp32 / fp64); calls it cannot
    take (empty query sets, other devices or dtypes) go to `ms_deform_attn_core`."""
    shapes = spatial_shapes_list(spatial_shapes)
    if not sparse_supports(value, shapes, sampling_locations.shape[1]):
        return ms_deform_attn_core(value, shapes, level_start_index, sampling_locations, attention_weights)
    return sparse_msda(value, shapes, sampling_locations, attention_weights)


# name -> function with ms_deform_attn_core's signature (see the module docstring)
MSDA_KERNELS = {"pytorch": ms_deform_attn_core, "sparse_cpu": ms_deform_attn_sparse}
AUTO_KERNEL = "auto"


def _tracing() -> bool:
    """True while torch.onnx / torch.jit / torch.compile / torch.export trace the model."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def auto_kernel(value: torch.Tensor) -> str:
    """The kernel "auto" stands for, for this value tensor (see the module docstring)."""
    if value.device.type == "cpu" and value.dtype in SPARSE_DTYPES and not _tracing():
        return "sparse_cpu"
    return "pytorch"


class MSDeformAttn(nn.Module):
    def __init__(
        self,
        d_model: int = 256,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        kernel: str = AUTO_KERNEL,
        value_ratio: float = 1.0,
    ):
        """value_ratio: width of the values (value_proj output, output_proj input) as a fraction of
        d_model; ViT-Adapter uses 0.5 (TAO's `ratio` / `deform_ratio`), the DETR layers 1.0."""
        super().__init__()
        value_dim = int(d_model * value_ratio)
        if d_model % n_heads != 0 or value_dim % n_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) and its value width ({value_dim}) must be divisible by n_heads ({n_heads})"
            )
        if kernel != AUTO_KERNEL and kernel not in MSDA_KERNELS:
            raise ValueError(f"unknown MSDA kernel {kernel!r}; registered: {sorted(MSDA_KERNELS)} or {AUTO_KERNEL!r}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.kernel = kernel
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        # Offsets start as a fixed pattern: head k points in direction 2*pi*k/n_heads, point i at
        # distance i+1 (in pixels of each level), so heads initially look in different directions.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: SpatialShapes,
        input_level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor = None,
    ) -> torch.Tensor:
        """
        query               (N, Lq, C)
        reference_points    (N, Lq, L, 2) normalised (x, y), or (N, Lq, L, 4) normalised (cx, cy, w, h):
                            with boxes the offsets are scaled by half the box size / n_points
        input_flatten       (N, S, C) the levels flattened and concatenated
        input_padding_mask  (N, S) True at padded positions: their values are zeroed, so what
                            padding holds can never reach the output
        returns             (N, Lq, C)
        """
        n, lq, _ = query.shape
        s = input_flatten.shape[1]
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, -1)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (W, H)
            wh = [[w, h] for h, w in spatial_shapes_list(input_spatial_shapes)]
            normalizer = torch.tensor(wh, dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference_points last dim must be 2 or 4, got {reference_points.shape[-1]}")
        kernel = auto_kernel(value) if self.kernel == AUTO_KERNEL else self.kernel
        out = MSDA_KERNELS[kernel](value, input_spatial_shapes, input_level_start_index, locations, weights)
        return self.output_proj(out)
