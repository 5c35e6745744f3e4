"""The sparse CPU kernel (`msda_cpu`) computes exactly what the grid_sample core computes:
forward and every gradient, fp64 to rounding and fp32 within 1e-5, including points on and
beyond the map borders; `auto` picks it on CPU and never while exporting."""

import warnings

import pytest
import torch

from tao_pytorch.detr.msda import (
    MSDA_KERNELS,
    MSDeformAttn,
    auto_kernel,
    ms_deform_attn_core,
    ms_deform_attn_sparse,
)

SHAPES = [(5, 7), (3, 4), (1, 1)]  # non-square, and a 1x1 level (every corner but one is padding)


def _inputs(dtype, shapes=SHAPES, n=2, lq=6, m=2, d=4, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    # locations well outside [0, 1] too (zero padding, points with no corner on the map)
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype) * 1.8 - 0.4
    loc[0, 0, 0, :, 0] = 0.0  # the map's corner
    loc[0, 0, 1, :, 0] = 1.0  # the opposite corner
    loc[-1, 0, 0, :, 1] = torch.tensor([-3.0, 4.0], dtype=dtype)  # far outside
    attn = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    attn = (attn / attn.sum((-2, -1), keepdim=True)).contiguous()
    starts = torch.tensor([0] + [h * w for h, w in shapes[:-1]]).cumsum(0)
    return value, loc, attn, starts


def _forward_and_grads(kernel, value, loc, attn, starts, shapes=SHAPES):
    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
    out = kernel(leaves[0], shapes, starts, leaves[1], leaves[2])
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return [out, *grads]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_sparse_kernel_equals_grid_sample_core(dtype, tol):
    args = _inputs(dtype)
    ref = _forward_and_grads(ms_deform_attn_core, *args)
    got = _forward_and_grads(ms_deform_attn_sparse, *args)
    for name, r, x in zip(("output", "d value", "d locations", "d attention"), ref, got):
        scale = float(r.detach().abs().max())
        assert scale > 0, name
        torch.testing.assert_close(x, r, rtol=tol, atol=tol * scale, msg=lambda text, name=name: f"{name}: {text}")


def test_sparse_kernel_at_encoder_like_shapes_fp32():
    """4 levels, 8 heads, 4 points, every pixel a query (the encoder's self-attention)."""
    shapes = [(12, 10), (6, 5), (3, 3), (2, 2)]
    s = sum(h * w for h, w in shapes)
    args = _inputs(torch.float32, shapes=shapes, n=2, lq=s, m=8, d=8, p=4, seed=3)
    ref = _forward_and_grads(ms_deform_attn_core, *args, shapes=shapes)
    got = _forward_and_grads(ms_deform_attn_sparse, *args, shapes=shapes)
    for r, x in zip(ref, got):
        torch.testing.assert_close(x, r, rtol=1e-5, atol=1e-5 * float(r.detach().abs().max()))


def test_sparse_kernel_at_decoder_like_shapes_fp32():
    """Few queries on large maps: the value gradient takes the direct transposed product (the
    encoder test above takes the per-corner one; entries * 4 vs value elements decides)."""
    shapes = [(16, 20), (8, 10), (4, 5)]
    s = sum(h * w for h, w in shapes)
    n, lq, m, d, p = 2, 3, 4, 8, 4
    assert n * lq * m * len(shapes) * p * 4 * 4 < n * s * m * d  # the direct path is taken
    args = _inputs(torch.float32, shapes=shapes, n=n, lq=lq, m=m, d=d, p=p, seed=4)
    ref = _forward_and_grads(ms_deform_attn_core, *args, shapes=shapes)
    got = _forward_and_grads(ms_deform_attn_sparse, *args, shapes=shapes)
    for r, x in zip(ref, got):
        torch.testing.assert_close(x, r, rtol=1e-5, atol=1e-5 * float(r.detach().abs().max()))


def test_sparse_kernel_gradcheck():
    shapes = [(3, 4), (2, 2)]
    value, loc, attn, starts = _inputs(torch.float64, shapes=shapes, n=1, lq=2, m=2, d=3, p=2, seed=5)
    loc = loc.clamp(-0.2, 1.2)

    def f(v, locations, a):
        return ms_deform_attn_sparse(v, shapes, starts, locations, a)

    inputs = tuple(t.clone().requires_grad_() for t in (value, loc, attn))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_sparse_kernel_partial_gradients_and_no_grad():
    value, loc, attn, starts = _inputs(torch.float32)
    ref = ms_deform_attn_core(value, SHAPES, starts, loc, attn)
    with torch.no_grad():
        torch.testing.assert_close(ms_deform_attn_sparse(value, SHAPES, starts, loc, attn), ref)
    # only the value needs a gradient (frozen sampling), then only the locations
    v = value.clone().requires_grad_()
    (gv,) = torch.autograd.grad(ms_deform_attn_sparse(v, SHAPES, starts, loc, attn).sum(), v)
    v2 = value.clone().requires_grad_()
    (gv_ref,) = torch.autograd.grad(ms_deform_attn_core(v2, SHAPES, starts, loc, attn).sum(), v2)
    torch.testing.assert_close(gv, gv_ref, rtol=1e-5, atol=1e-5)
    lo = loc.clone().requires_grad_()
    (gl,) = torch.autograd.grad(ms_deform_attn_sparse(value, SHAPES, starts, lo, attn).sum(), lo)
    lo2 = loc.clone().requires_grad_()
    (gl_ref,) = torch.autograd.grad(ms_deform_attn_core(value, SHAPES, starts, lo2, attn).sum(), lo2)
    torch.testing.assert_close(gl, gl_ref, rtol=1e-5, atol=1e-5 * float(gl_ref.abs().max()))


def test_sparse_kernel_empty_query_set_and_no_beta_warning():
    value, loc, attn, starts = _inputs(torch.float32)
    out = ms_deform_attn_sparse(value, SHAPES, starts, loc[:, :0], attn[:, :0])
    assert out.shape == (2, 0, 8)
    v = value.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sparse-CSR "beta" notice must not reach users
        ms_deform_attn_sparse(v, SHAPES, starts, loc, attn).sum().backward()


def test_auto_kernel_choice():
    assert "sparse_cpu" in MSDA_KERNELS
    assert auto_kernel(torch.zeros(1)) == "sparse_cpu"
    assert auto_kernel(torch.zeros(1, dtype=torch.float64)) == "sparse_cpu"
    assert auto_kernel(torch.zeros(1, dtype=torch.bfloat16)) == "pytorch"  # no bf16 sparse BLAS on CPU
    assert MSDeformAttn(32, n_levels=2, n_heads=4, n_points=2).kernel == "auto"
    with pytest.raises(ValueError, match="unknown MSDA kernel"):
        MSDeformAttn(32, n_levels=2, n_heads=4, n_points=2, kernel="cuda_fast")


def test_module_auto_equals_pytorch_kernel():
    torch.manual_seed(0)
    shapes = [(6, 8), (3, 4)]
    attn = MSDeformAttn(32, n_levels=2, n_heads=4, n_points=3)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.attention_weights.weight.normal_(0, 0.5)
    query, flat = torch.randn(2, 5, 32), torch.randn(2, 60, 32)
    refs = torch.rand(2, 5, 2, 2)
    start = torch.tensor([0, 48])
    results = []
    for kernel in ("pytorch", "auto"):
        attn.kernel = kernel
        attn.zero_grad()
        out = attn(query, refs, flat, shapes, start)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in attn.parameters()]))
    (ref, ref_grads), (got, got_grads) = results
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()) + 1e-7)


def test_traced_module_uses_the_grid_sample_core():
    """torch.jit.trace (what the legacy ONNX exporter runs) must see the exportable core."""
    attn = MSDeformAttn(32, n_levels=2, n_heads=4, n_points=2).eval()
    shapes = torch.tensor([[6, 8], [3, 4]])
    args = (torch.randn(1, 5, 32), torch.rand(1, 5, 2, 2), torch.randn(1, 60, 32), shapes, torch.tensor([0, 48]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(attn, args, check_trace=False)
    assert "grid_sampler" in str(traced.inlined_graph)
