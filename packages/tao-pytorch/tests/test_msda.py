import math

import torch

from tao_pytorch.detr.msda import MSDA_KERNELS, MSDeformAttn, ms_deform_attn_core


def naive_msda(value, shapes, locations, weights):
    """Per-point loop: bilinear sample, pixel centres at (i + 0.5) / W, zero outside the map."""
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    out = torch.zeros(n, lq, m, d, dtype=torch.float64)
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(n_points):
                        x = locations[b, q, head, lvl, p, 0].item() * w - 0.5
                        y = locations[b, q, head, lvl, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(d, dtype=torch.float64)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= xx < w and 0 <= yy < h:
                                    sample += wy * wx * value[b, starts[lvl] + yy * w + xx, head].double()
                        out[b, q, head] += weights[b, q, head, lvl, p].item() * sample
    return out.view(n, lq, m * d)


def test_core_matches_naive_loop():
    torch.manual_seed(0)
    shapes = [(5, 7), (3, 4)]
    n, lq, m, d, p = 2, 3, 2, 4, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d)
    # include points outside [0, 1] to exercise the zero padding
    locations = torch.rand(n, lq, m, len(shapes), p, 2) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes), p).softmax(-1)
    level_start = torch.tensor([0, 35])
    got = ms_deform_attn_core(value, torch.tensor(shapes), level_start, locations, weights)
    torch.testing.assert_close(got.double(), naive_msda(value, shapes, locations, weights), rtol=1e-5, atol=1e-5)
    # shapes may also be given as python tuples
    torch.testing.assert_close(ms_deform_attn_core(value, shapes, level_start, locations, weights), got)
    assert MSDA_KERNELS["pytorch"] is ms_deform_attn_core


def _inputs(ref_dim):
    torch.manual_seed(1)
    shapes = [(6, 8), (3, 4)]
    s = sum(h * w for h, w in shapes)
    query = torch.randn(2, 5, 32)
    refs = torch.rand(2, 5, 2, ref_dim) * 0.5 + 0.25
    flat = torch.randn(2, s, 32)
    mask = torch.zeros(2, s, dtype=torch.bool)
    mask[1, :48].view(6, 8)[:, 5:] = True  # image 1: right part of level 0 is padding
    mask[1, 48:].view(3, 4)[:, 3:] = True
    return shapes, query, refs, flat, mask


def test_module_honours_padding_mask():
    for ref_dim in (2, 4):
        shapes, query, refs, flat, mask = _inputs(ref_dim)
        attn = MSDeformAttn(32, n_levels=2, n_heads=4, n_points=3)
        with torch.no_grad():  # non-trivial offsets / weights
            attn.sampling_offsets.weight.normal_(0, 0.5)
            attn.attention_weights.weight.normal_(0, 0.5)
        start = torch.tensor([0, 48])
        out = attn(query, refs, flat, shapes, start, mask)
        assert out.shape == (2, 5, 32)
        changed = flat.clone()
        changed[mask] = torch.randn(int(mask.sum()), 32) * 100
        torch.testing.assert_close(attn(query, refs, changed, shapes, start, mask), out)
        # without the mask the padded values do leak in (the test would catch a missing mask)
        assert not torch.allclose(attn(query, refs, changed, shapes, start, None)[1], out[1])


def test_init_matches_reference_pattern():
    attn = MSDeformAttn(32, n_levels=2, n_heads=4, n_points=3)
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    # head 0 points along +x, head 1 along +y; point i at distance i + 1
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[1, 1, :, 1], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.all(attn.attention_weights.weight == 0)
