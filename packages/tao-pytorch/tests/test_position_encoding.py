"""The sine position embedding against its published formula, for each network's convention.

Per axis, a valid pixel's coordinate is its 1-based index n counted over valid pixels only, of
N valid pixels on that line:  c = (n - offset) / N * 2pi,  offset 0.5 for Deformable DETR
(fundamentalvision/Deformable-DETR) and 0 for DINO (IDEA-Research/DINO, TAO's DINO).
Channel 2i and 2i+1 of each half are sin / cos of c / T**(2i / F), F = num_pos_feats, T = the
axis temperature; the first half encodes y, the second x.

The expected values below are written out by hand from that formula on a 1 x 3 x 4 mask whose
last row and last column are padding (valid image 2 rows x 3 columns).
"""

import math

import pytest
import torch
from model_helpers import NUM_CLASSES, tiny_ddetr, tiny_dino

from tao_pytorch.deformable_detr.model import build_deformable_detr
from tao_pytorch.detr.position_encoding import PositionEmbeddingSine
from tao_pytorch.dino.model import build_dino

PI = math.pi
# 1 x 3 x 4, True = padding: row 2 and column 3 padded
MASK = torch.tensor([[[False, False, False, True], [False, False, False, True], [True, True, True, True]]])
VALID = [(r, c) for r in range(2) for c in range(3)]

# y over N = 2 valid rows, x over N = 3 valid columns
COORDS = {
    # DINO: n / N * 2pi
    0.0: {"y": [PI, 2 * PI], "x": [2 * PI / 3, 4 * PI / 3, 2 * PI]},
    # Deformable DETR: (n - 0.5) / N * 2pi
    0.5: {"y": [PI / 2, 3 * PI / 2], "x": [PI / 3, PI, 5 * PI / 3]},
}
# num_pos_feats = 4, temperature_h = 100, temperature_w = 10000:
# y divisors 100**(0/4), 100**(0/4), 100**(2/4), 100**(2/4) = 1, 1, 10, 10; x divisors 1, 1, 100, 100
Y_DIV, X_DIV = (1, 1, 10, 10), (1, 1, 100, 100)


def assert_near(got: torch.Tensor, want, atol: float = 2e-5, msg: str = ""):
    want = torch.as_tensor(want, dtype=got.dtype)
    err = (got - want).abs().max().item()
    assert err <= atol, f"{msg} max |got - want| = {err:.2e}\ngot  {got.tolist()}\nwant {want.tolist()}"


def expected_pixel(y: float, x: float):
    y_half = [math.sin(y / Y_DIV[0]), math.cos(y / Y_DIV[1]), math.sin(y / Y_DIV[2]), math.cos(y / Y_DIV[3])]
    x_half = [math.sin(x / X_DIV[0]), math.cos(x / X_DIV[1]), math.sin(x / X_DIV[2]), math.cos(x / X_DIV[3])]
    return y_half + x_half


@pytest.mark.parametrize("offset", [0.0, 0.5], ids=["dino", "deformable_detr"])
def test_valid_pixels_follow_the_published_formula(offset):
    pos = PositionEmbeddingSine(4, 100.0, 10000.0, normalize_offset=offset)(MASK)
    assert pos.shape == (1, 8, 3, 4)
    for r, c in VALID:
        want = torch.tensor(expected_pixel(COORDS[offset]["y"][r], COORDS[offset]["x"][c]))
        assert_near(pos[0, :, r, c], want, msg=f"pixel {(r, c)}")


def test_hand_values_at_the_top_left_pixel():
    """A few literal numbers, so the table above is not the only witness."""
    s3 = math.sqrt(3) / 2
    dino = PositionEmbeddingSine(4, 100.0, 10000.0, normalize_offset=0.0)(MASK)[0, :, 0, 0]
    # y = pi, x = 2pi/3
    assert_near(dino[[0, 1, 4, 5]], [0.0, -1.0, s3, -0.5])
    ddetr = PositionEmbeddingSine(4, 100.0, 10000.0, normalize_offset=0.5)(MASK)[0, :, 0, 0]
    # y = pi/2, x = pi/3
    assert_near(ddetr[[0, 1, 4, 5]], [1.0, 0.0, s3, 0.5])
    # bottom-right valid pixel: DINO reaches 2pi on both axes, Deformable DETR stops half a pixel short
    dino_br = PositionEmbeddingSine(4, 100.0, 10000.0, normalize_offset=0.0)(MASK)[0, :, 1, 2]
    assert_near(dino_br[[0, 1, 4, 5]], [0.0, 1.0, 0.0, 1.0])


@pytest.mark.parametrize("offset", [0.0, 0.5], ids=["dino", "deformable_detr"])
def test_padding_does_not_shift_the_image_encoding(offset):
    pe = PositionEmbeddingSine(4, 20.0, 20.0, normalize_offset=offset)
    padded = pe(MASK)[:, :, :2, :3]
    alone = pe(torch.zeros(1, 2, 3, dtype=torch.bool))
    assert_near(padded, alone, atol=1e-6)


def test_each_network_builds_its_reference_convention():
    """The models' own position embedding (hidden_dim 32 -> 16 features per axis): channels 0, 1 are
    sin / cos of the y coordinate, channels 16, 17 of x (divisor 1 for the first pair)."""
    mask = MASK
    for build, cfg, offset in ((build_dino, tiny_dino(), 0.0), (build_deformable_detr, tiny_ddetr(), 0.5)):
        pos = build(cfg, NUM_CLASSES).backbone[1](mask)
        for r, c in VALID:
            y, x = COORDS[offset]["y"][r], COORDS[offset]["x"][c]
            got = pos[0, [0, 1, 16, 17], r, c]
            want = torch.tensor([math.sin(y), math.cos(y), math.sin(x), math.cos(x)])
            assert_near(got, want, msg=f"{build.__name__} pixel {(r, c)}")


def test_normalize_offset_is_required():
    with pytest.raises(TypeError):
        PositionEmbeddingSine(4, 20.0, 20.0)
