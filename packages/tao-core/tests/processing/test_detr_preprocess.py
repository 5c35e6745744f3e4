"""tao_core.processing.detr: resize rule, normalisation values, batching mask."""

import numpy as np
import pytest
from PIL import Image

from tao_core.processing import detr


@pytest.mark.parametrize(
    ("hw", "short", "max_size", "expected"),
    [
        ((480, 640), 800, 1333, (800, 1066)),  # 800 * 640 / 480 = 1066.67 -> truncated, not rounded
        ((640, 480), 800, 1333, (1066, 800)),  # portrait: same rule on the other axis
        ((800, 1000), 800, 1333, (800, 1000)),  # short side already the target: unchanged
        ((100, 400), 800, 1333, (333, 1332)),  # long side capped: short = round(1333 / 4) = 333
        ((200, 500), 800, 1333, (533, 1332)),  # round(533.2) = 533, long = int(533 * 2.5) = 1332
        ((100, 300), 800, None, (800, 2400)),  # no max_size: no cap
        ((500, 500), 600, 1333, (600, 600)),
    ],
)
def test_resize_keep_ratio_rule(hw, short, max_size, expected):
    assert detr.resize_keep_ratio(hw, short, max_size) == expected


def test_resize_keep_ratio_uses_bankers_rounding_of_the_capped_short_side():
    # max_size * short / long = 10 * 5 / 20 = 2.5 -> Python round gives 2 (half to even), long = 8.
    assert detr.resize_keep_ratio((5, 20), 100, 10) == (2, 8)
    # 3.5 rounds to 4: short 7, long 20, max 10 -> 10 * 7 / 20 = 3.5 -> 4, long = int(4 * 20 / 7) = 11
    # (the documented overshoot of max_size, only possible for aspect ratios > 2).
    assert detr.resize_keep_ratio((7, 20), 100, 10) == (4, 11)


def test_resize_keep_ratio_long_side_within_max_for_moderate_aspects():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = rng.integers(50, 3000, size=2)
        if max(h, w) / min(h, w) >= 2:
            continue
        nh, nw = detr.resize_keep_ratio((h, w), 800, 1333)
        assert max(nh, nw) <= 1333 and min(nh, nw) <= 800


def test_resize_keep_ratio_rejects_empty():
    with pytest.raises(ValueError):
        detr.resize_keep_ratio((0, 5), 10)


def test_normalize_values_by_hand():
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 51)
    img[0, 1] = (0, 255, 102)
    out = detr.normalize_image(img, mean=(0.5, 0.25, 0.2), std=(0.5, 0.25, 0.2))
    assert out.dtype == np.float32 and out.shape == (3, 1, 2)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], [-1.0, 3.0, 1.0], atol=1e-6)


def test_normalize_single_value_stats_broadcast():
    img = np.full((2, 2, 3), 255, np.uint8)
    out = detr.normalize_image(img, mean=[0.5], std=[0.25])
    np.testing.assert_allclose(out, 2.0)
    with pytest.raises(ValueError, match="1 or 3"):
        detr.normalize_image(img, mean=[0.5, 0.5], std=[1.0])


def test_normalize_matches_float32_reference_order():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    mean = np.float32(detr.IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.float32(detr.IMAGENET_STD).reshape(3, 1, 1)
    ref = (img.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - mean) / std
    np.testing.assert_array_equal(detr.normalize_image(img), ref)


def test_preprocess_image_modes():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    exact = detr.preprocess_image(img, size=(30, 50))
    assert exact.shape == (3, 30, 50) and exact.dtype == np.float32
    keep = detr.preprocess_image(img, short_side=24, max_size=100)
    assert keep.shape == (3, 24, 32)
    # Same numbers as Pillow bilinear + normalize done by hand.
    ref = np.asarray(Image.fromarray(img).resize((50, 30), Image.BILINEAR))
    np.testing.assert_array_equal(exact, detr.normalize_image(ref))
    with pytest.raises(ValueError, match="exactly one"):
        detr.preprocess_image(img)
    with pytest.raises(ValueError, match="exactly one"):
        detr.preprocess_image(img, size=(2, 2), short_side=3)


def test_preprocess_image_no_resize_when_size_matches():
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    np.testing.assert_array_equal(detr.preprocess_image(img, size=(4, 6)), detr.normalize_image(img))


def test_pad_batch_mask_marks_padding():
    a = np.ones((3, 2, 3), np.float32)
    b = np.full((3, 4, 2), 2.0, np.float32)
    batch, mask = detr.pad_batch([a, b])
    assert batch.shape == (2, 3, 4, 3) and mask.shape == (2, 4, 3)
    assert not mask[0, :2, :3].any() and mask[0, 2:].all()
    assert not mask[1, :, :2].any() and mask[1, :, 2].all()
    assert (batch[0, :, 2:] == 0).all() and (batch[1, :, :, 2] == 0).all()
    np.testing.assert_array_equal(batch[1, :, :4, :2], b)


def test_pad_batch_fixed_size_and_valid_sizes():
    a = np.ones((3, 4, 4), np.float32)  # already padded from a 2x3 image
    batch, mask = detr.pad_batch([a], pad_to=(5, 6), valid_sizes=[(2, 3)])
    assert batch.shape == (1, 3, 5, 6)
    assert not mask[0, :2, :3].any()
    assert mask.sum() == 5 * 6 - 2 * 3
    with pytest.raises(ValueError, match="smaller"):
        detr.pad_batch([a], pad_to=(3, 6))


def test_preprocess_batch_exact_size_has_no_padding():
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(20, 30), (40, 10)]]
    batch, mask = detr.preprocess_batch(imgs, size=(16, 24))
    assert batch.shape == (2, 3, 16, 24) and not mask.any()
    batch, mask = detr.preprocess_batch(imgs, short_side=10, max_size=40)
    # (20, 30) -> (10, 15); (40, 10): 4 * 10 is not above 40 and the short side is already 10 -> unchanged
    assert batch.shape == (2, 3, 40, 15)
    assert not mask[0, :10, :15].any() and mask[0, 10:].all()
    assert not mask[1, :40, :10].any() and mask[1, :, 10:].all()
