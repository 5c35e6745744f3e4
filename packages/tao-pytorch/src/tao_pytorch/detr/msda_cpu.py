"""Multi-scale deformable attention core for CPU training: one sparse matrix product per pass.

The op is linear in `value`: every output row (image n, query q, head m) is a weighted sum of
4 * L * P value rows (the bilinear corners of each sampling point), with weight
attention * bilinear factor. Written as a sparse matrix A (rows n,q,m; K = 4*L*P entries per
row) times the value matrix, the three passes are single library calls instead of one
`grid_sample` per level plus a (N*M, D, Lq, L*P) stack of samples to weigh and sum:

    forward        out  = A @ V                            (embedding_bag: a gather-sum per row)
    grad of A      dA   = (dout @ V^T) at A's entries      (torch.sparse.sampled_addmm)
    grad of value  dV   = A^T @ dout                       (CSR product of the transposed pattern)

and the gradients of the sampling locations and attention weights follow from dA by the
bilinear formula (a few elementwise ops on (N, Lq, M, L, P) tensors), with no autograd graph
through the index arithmetic.

Layout tricks that keep it cheap:
  * each level's map is stored zero-padded by one pixel (`_pad_levels`), so a corner that falls
    just outside the map reads a zero, exactly grid_sample's zeros padding, with no per-corner
    validity mask; a point whose corners are all outside gets weight 0;
  * the 4 corners of a point sit at fixed offsets (0, 1, Wp, Wp + 1 pixels) from its top-left
    corner, so with many queries (encoder) A^T needs only the top-left pattern (L*P entries per
    row, not 4*L*P) sorted once, and the 4 corner products are shifted into place level by
    level; with few queries (decoder) all entries are sorted, which is cheaper there;
  * elementwise work runs on contiguous (corner or x/y, L, N, Lq, M, P) planes.
The value rows are indexed in value's own (N, S, M) order and the output comes out as
(N, Lq, M, D) = (N, Lq, M*D): no transposes of value or output.

Numerics: the sampling position is computed as grid_sample computes it from the [-1, 1] grid
the PyTorch core passes, so the result equals `ms_deform_attn_core` (forward and gradients) up to
float summation order. fp32 / fp64 only; `msda.MSDeformAttn` falls back to the PyTorch core for
other dtypes, on other devices, and whenever the model is traced or exported (the ONNX graph keeps
the standard GridSample op).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import List, Tuple

import torch
import torch.nn.functional as F

DTYPES = (torch.float32, torch.float64)  # what the CPU sparse BLAS behind these products takes


def _pad_levels(value: torch.Tensor, shapes: List[Tuple[int, int]]) -> Tuple[torch.Tensor, List[int]]:
    """(N, S, M, D) -> (N, S_pad, M, D) with each level's (H, W) map zero-padded to (H+2, W+2);
    returns it and the start of each padded level in S_pad."""
    n, _, m, d = value.shape
    sizes = [(h + 2) * (w + 2) for h, w in shapes]
    starts = [0]
    for s in sizes[:-1]:
        starts.append(starts[-1] + s)
    padded = value.new_zeros(n, sum(sizes), m, d)
    src = 0
    for (h, w), start, size in zip(shapes, starts, sizes):
        padded[:, start : start + size].view(n, h + 2, w + 2, m, d)[:, 1 : h + 1, 1 : w + 1] = value[
            :, src : src + h * w
        ].reshape(n, h, w, m, d)
        src += h * w
    return padded, starts


def _unpad_levels(padded: torch.Tensor, shapes: List[Tuple[int, int]], starts: List[int]) -> torch.Tensor:
    """Inverse of `_pad_levels`: the interior of each padded level, flattened and concatenated."""
    n, _, m, d = padded.shape
    parts = [
        padded[:, start : start + (h + 2) * (w + 2)].view(n, h + 2, w + 2, m, d)[:, 1 : h + 1, 1 : w + 1].reshape(
            n, h * w, m, d
        )
        for (h, w), start in zip(shapes, starts)
    ]
    return torch.cat(parts, 1)


def _index_dtype(n_rows: int) -> torch.dtype:
    # int32 indices halve the index arithmetic and are what MKL's sparse BLAS takes without a copy
    return torch.int32 if n_rows < 2**31 - 1 else torch.long


@contextlib.contextmanager
def _no_csr_beta_warning():
    # torch warns once per process that sparse CSR is "beta"; these uses are plain CSR products
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


class _SparseMSDA(torch.autograd.Function):
    """Elementwise work runs on "planar" tensors (corner or x/y, L, N, Lq, M, P): contiguous
    planes with the per-level constants broadcast over the outer dimension only, which is many
    times faster on CPU than broadcasting into the small trailing dims of (..., L, P, 2).
    Not twice differentiable (the backward is hand-written)."""

    @staticmethod
    def forward(ctx, value, sampling_locations, attention_weights, shapes):
        n, _, m, d = value.shape
        _, lq, _, n_levels, n_points, _ = sampling_locations.shape
        dtype, device = value.dtype, value.device
        v_pad, pad_starts = _pad_levels(value, shapes)
        v_flat = v_pad.view(-1, d)
        index = _index_dtype(v_flat.shape[0])
        level = (1, n_levels, 1, 1, 1, 1)

        size = torch.tensor([[w for _, w in shapes], [h for h, _ in shapes]], dtype=dtype, device=device)
        size = size.view(2, *level[1:])  # (x/y, L, 1, 1, 1, 1): (W, H) of each level
        loc = sampling_locations.permute(5, 3, 0, 1, 2, 4).contiguous()  # (2, L, N, Lq, M, P)
        # grid_sample's arithmetic on the grid 2*loc - 1 (align_corners=False): ((g + 1) * size - 1) / 2
        pix = loc.mul_(2).sub_(1).add_(1).mul_(size).sub_(1).div_(2)
        corner0 = pix.floor()
        frac = pix - corner0  # offset from the top-left corner, in [0, 1)
        # inside: floor(pix) in [-1, size - 1], i.e. at least one corner on the map (the others
        # then read the zero padding); points further out get weight 0
        inside = ((pix >= -1) & (pix < size)).all(0)  # (L, N, Lq, M, P)
        # top-left corner in padded coordinates, clamped so that outside points still index their level
        tl = torch.clamp(corner0.add_(1), min=torch.zeros_like(size), max=size)
        row_width = size[0] + 2
        level_start = torch.tensor(pad_starts, dtype=dtype, device=device).view(level[1:])
        # pixel index within one image's padded levels: exact in floating point (< 2**24 pixels)
        pixel = tl[1].mul_(row_width).add_(tl[0]).add_(level_start).to(index)  # (L, N, Lq, M, P)
        s_pad = v_pad.shape[1]
        batch = torch.arange(0, n * s_pad * m, s_pad * m, dtype=index, device=device).view(n, 1, 1, 1)
        head = torch.arange(m, dtype=index, device=device).view(1, 1, m, 1)
        image_head = (batch + head).expand(n, lq, m, n_points).contiguous()
        top_left = pixel.mul_(m).add_(image_head)  # row of v_flat of the top-left corner

        # corners (dy, dx) = (0, 0), (0, 1), (1, 0), (1, 1) sit 0, 1, Wp, Wp + 1 pixels on
        widths = [w + 2 for _, w in shapes]
        step = torch.tensor([[0] * n_levels, [m] * n_levels, [wp * m for wp in widths], [(wp + 1) * m for wp in widths]],
                            dtype=index, device=device).view(4, *level[1:])
        cols = top_left[None] + step  # (4, L, N, Lq, M, P)
        attn_in = attention_weights.permute(3, 0, 1, 2, 4) * inside.to(dtype)  # (L, N, Lq, M, P)
        fx, fy = frac[0], frac[1]
        top, bottom = attn_in * (1 - fy), attn_in * fy
        weights = torch.empty_like(cols, dtype=dtype)
        torch.mul(top, 1 - fx, out=weights[0])
        torch.mul(top, fx, out=weights[1])
        torch.mul(bottom, 1 - fx, out=weights[2])
        torch.mul(bottom, fx, out=weights[3])

        rows = n * lq * m
        k = n_levels * n_points * 4
        # one row (image, query, head) per bag: its 4 * L * P entries side by side
        cols_rows = cols.permute(2, 3, 4, 0, 1, 5).reshape(rows, k)
        weights_rows = weights.permute(2, 3, 4, 0, 1, 5).reshape(rows, k)
        out = F.embedding_bag(cols_rows, v_flat, mode="sum", per_sample_weights=weights_rows)

        ctx.shapes = shapes
        ctx.pad_starts = pad_starts
        ctx.save_for_backward(v_pad, top_left, cols_rows, weights, frac, attn_in, inside, size)
        return out.view(n, lq, m * d)

    @staticmethod
    def backward(ctx, grad_out):
        v_pad, top_left, cols_rows, weights, frac, attn_in, inside, size = ctx.saved_tensors
        n_levels, n, lq, m, n_points = top_left.shape
        d = v_pad.shape[-1]
        rows, k = cols_rows.shape
        go = grad_out.reshape(rows, d).contiguous()
        v_flat = v_pad.view(-1, d)
        grad_value = grad_loc = grad_attn = None

        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            crow = torch.arange(0, rows * k + 1, k, dtype=cols_rows.dtype, device=go.device)
            with _no_csr_beta_warning():
                pattern = torch.sparse_csr_tensor(crow, cols_rows.view(-1), go.new_zeros(rows * k), (rows, len(v_flat)),
                                              check_invariants=False)
            # g = <dout[row], v[col]> at every entry: the gradient of each corner weight
            g = torch.sparse.sampled_addmm(pattern, go, v_flat.t(), beta=0.0).values()
            g = g.view(n, lq, m, 4, n_levels, n_points).permute(3, 4, 0, 1, 2, 5).contiguous()
            g00, g01, g10, g11 = g  # planar, (L, N, Lq, M, P) each
            fx, fy = frac[0], frac[1]
            along_x0, along_x1 = torch.lerp(g00, g01, fx), torch.lerp(g10, g11, fx)
            if ctx.needs_input_grad[2]:
                grad_attn = torch.lerp(along_x0, along_x1, fy).mul_(inside).permute(1, 2, 3, 0, 4)
            if ctx.needs_input_grad[1]:
                # weights are attn * (1 - f or f) per axis: d/df = attn * (g_far - g_near); d(pix)/d(loc) = size
                grad_fx = torch.lerp(g01, g11, fy).sub_(torch.lerp(g00, g10, fy))
                grad_fy = along_x1.sub_(along_x0)
                grad_loc = torch.stack([grad_fx, grad_fy]).mul_(attn_in).mul_(size).permute(2, 3, 4, 1, 5, 0)

        if ctx.needs_input_grad[0]:
            if cols_rows.numel() * 4 < v_flat.numel():
                # few queries (decoder): transposing all 4 corners directly beats 4 value-sized products
                weights_rows = weights.permute(2, 3, 4, 0, 1, 5).reshape(-1)
                grad_pad = _transposed_product(cols_rows.view(-1), weights_rows, k, go, v_flat.shape[0])
                grad_pad = grad_pad.view(v_pad.shape)
            else:
                grad_pad = _scatter_corners(go, top_left, weights, v_pad.shape, ctx.shapes, ctx.pad_starts)
            grad_value = _unpad_levels(grad_pad, ctx.shapes, ctx.pad_starts)
        return grad_value, grad_loc, grad_attn, None


def _transposed_product(keys, values, per_row, go, n_cols):
    """A^T @ go for the sparse A whose row r holds entries r * per_row ... (r + 1) * per_row - 1 of
    (keys = column, values): A^T as CSR, by sorting the entries by column."""
    order = torch.sort(keys, stable=True).indices
    crow = torch.zeros(n_cols + 1, dtype=keys.dtype, device=go.device)
    crow[1:] = torch.bincount(keys, minlength=n_cols).cumsum(0)
    src_rows = torch.div(order, per_row, rounding_mode="floor").to(keys.dtype)
    with _no_csr_beta_warning():
        at = torch.sparse_csr_tensor(crow, src_rows, values.index_select(0, order), (n_cols, go.shape[0]),
                                     check_invariants=False)
    return at @ go


def _scatter_corners(go, top_left, weights, pad_shape, shapes, pad_starts):
    """dV (padded) = A^T @ dout, from the top-left pattern: one CSR product per corner (stacked in
    one call), then each corner's rows shifted by its offset within every level. Sorts L * P
    entries per row instead of 4 * L * P: the choice when there are many queries (encoder).

    top_left (L, N, Lq, M, P) value rows, weights (4, L, N, Lq, M, P), go (N * Lq * M, D)."""
    n, s_pad, m, d = pad_shape
    rows = go.shape[0]
    n_points = top_left.shape[-1]
    keys = top_left.reshape(-1)
    index = keys.dtype
    n_cols = n * s_pad * m
    order = torch.sort(keys, stable=True).indices  # entries grouped by value row
    crow = torch.zeros(n_cols + 1, dtype=index, device=go.device)
    crow[1:] = torch.bincount(keys, minlength=n_cols).cumsum(0)
    # row of A (image, query, head) of each sorted entry: planar index e -> (e mod N*Lq*M*P) // P
    src_rows = torch.div(order % (rows * n_points), n_points, rounding_mode="floor").to(index)
    corner_w = weights.view(4, -1).index_select(1, order)  # (4, nnz): corner c's weights, sorted
    nnz = keys.numel()
    stacked_crow = torch.cat([crow[:-1] + c * nnz for c in range(4)] + [crow[-1:] + 3 * nnz])
    with _no_csr_beta_warning():
        stacked = torch.sparse_csr_tensor(stacked_crow, src_rows.repeat(4), corner_w.view(-1), (4 * n_cols, rows),
                                          check_invariants=False)
    per_corner = (stacked @ go).view(4, n, s_pad, m, d)  # corner c's contributions, at the top-left rows
    grad_pad = per_corner[0]
    for (h, w), start in zip(shapes, pad_starts):
        size = (h + 2) * (w + 2)
        for c, shift in ((1, 1), (2, w + 2), (3, w + 3)):
            grad_pad[:, start + shift : start + size] += per_corner[c, :, start : start + size - shift]
    return grad_pad


def sparse_msda(
    value: torch.Tensor,
    shapes: List[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """`ms_deform_attn_core` with the level sizes as a list of (H, W): (N, Lq, M*D). Preconditions
    (`supports` checks them): CPU, fp32 / fp64, at least one output row."""
    return _SparseMSDA.apply(value, sampling_locations, attention_weights, shapes)


def supports(value: torch.Tensor, shapes: List[Tuple[int, int]], n_queries: int) -> bool:
    """Whether `sparse_msda` computes this call: CPU fp32 / fp64, at least one output row, and
    padded levels small enough for exact pixel indices in floating point (< 2**24 per image)."""
    n, _, m, _ = value.shape
    padded = sum((h + 2) * (w + 2) for h, w in shapes)
    return (
        value.device.type == "cpu"
        and value.dtype in DTYPES
        and n * n_queries * m > 0
        and padded < 2**24
    )
