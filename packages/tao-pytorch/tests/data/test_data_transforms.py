"""tao_pytorch.detr.data.transforms: box geometry of each transform and the built pipelines."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tao_core.processing.detr import preprocess_image
from tao_pytorch.detr.data import transforms as T


def _target(boxes, labels=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return {"boxes": boxes, "labels": np.arange(1, n + 1) if labels is None else np.asarray(labels),
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), "iscrowd": np.zeros(n, np.int64),
            "image_id": np.array([7]), "orig_size": np.array([0, 0]), "size": np.array([0, 0])}


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_hflip_by_hand():
    img = _image(6, 10)
    out, tgt = T.hflip(img, _target([[1, 2, 4, 5]]))
    np.testing.assert_array_equal(tgt["boxes"], [[6, 2, 9, 5]])  # x1' = 10 - 4, x2' = 10 - 1
    np.testing.assert_array_equal(out, img[:, ::-1])
    assert out.flags.c_contiguous
    # Flipping twice is the identity.
    back, tgt2 = T.hflip(out, tgt)
    np.testing.assert_array_equal(back, img)
    np.testing.assert_array_equal(tgt2["boxes"], [[1, 2, 4, 5]])


def test_random_flip_probability_edges():
    img = _image(4, 8)
    tgt = _target([[0, 0, 2, 2]])
    assert T.RandomHorizontalFlip(0.0)(img, tgt)[1]["boxes"][0, 0] == 0
    assert T.RandomHorizontalFlip(1.0)(img, tgt)[1]["boxes"][0, 0] == 6


def test_pil_input_accepted():
    img = _image(5, 9)
    out, _ = T.RandomHorizontalFlip(0.0)(Image.fromarray(img), _target([]))
    np.testing.assert_array_equal(out, img)


def test_resize_keeps_aspect_and_respects_max_size():
    img = _image(480, 640)
    out, tgt = T.RandomResize([800], max_size=1333)(img, _target([[64, 48, 320, 240]]))
    assert out.shape == (800, 1066, 3)
    np.testing.assert_allclose(tgt["boxes"], [[64 * 1066 / 640, 80, 320 * 1066 / 640, 400]], rtol=1e-5)
    np.testing.assert_allclose(tgt["area"], (256 * 192) * (1066 / 640) * (800 / 480), rtol=1e-5)
    assert tuple(tgt["size"]) == (800, 1066)
    wide = _image(100, 250)
    out, tgt = T.RandomResize([800], max_size=1333)(wide, _target([[0, 0, 250, 100]]))
    assert out.shape[:2] == (533, 1332)  # short side capped: round(1333 / 2.5) = 533
    np.testing.assert_allclose(tgt["boxes"], [[0, 0, 1332, 533]], rtol=1e-6)
    # Random sizes: always one of the scales on the short side (none of these hits the cap).
    random.seed(0)
    for _ in range(10):
        out, _ = T.RandomResize([96, 112, 128], max_size=200)(_image(90, 120), _target([]))
        assert out.shape[0] in (96, 112, 128) and abs(out.shape[1] / out.shape[0] - 120 / 90) < 0.02


def test_crop_clips_and_drops_vanished_boxes_with_their_fields():
    img = _image(100, 100)
    tgt = _target([[10, 10, 30, 30], [60, 60, 90, 90], [45, 0, 70, 20]], labels=[3, 4, 5])
    tgt["iscrowd"] = np.array([0, 1, 0])
    out, res = T.crop(img, tgt, top=0, left=40, height=50, width=50)
    assert out.shape == (50, 50, 3)
    np.testing.assert_array_equal(out, img[:50, 40:90])
    # box 0 lies left of the crop, box 1 below it: both gone with their label and crowd flag.
    np.testing.assert_array_equal(res["labels"], [5])
    np.testing.assert_array_equal(res["iscrowd"], [0])
    np.testing.assert_array_equal(res["boxes"], [[5, 0, 30, 20]])
    np.testing.assert_array_equal(res["area"], [25 * 20])
    assert tuple(res["size"]) == (50, 50)
    # A box only touching the crop edge (zero width inside) vanishes too.
    _, res = T.crop(img, _target([[0, 0, 40, 10]]), top=0, left=40, height=50, width=50)
    assert len(res["boxes"]) == 0 and len(res["labels"]) == 0


def test_random_size_crop_bounds_and_small_image():
    random.seed(1)
    for _ in range(20):
        out, tgt = T.RandomSizeCrop(30, 60)(_image(80, 120), _target([[0, 0, 120, 80]]))
        h, w = out.shape[:2]
        assert 30 <= h <= 60 and 30 <= w <= 60
        np.testing.assert_array_equal(tgt["boxes"], [[0, 0, w, h]])  # the full-image box is cut to the crop
    out, _ = T.RandomSizeCrop(384, 600)(_image(20, 30), _target([]))
    assert out.shape[:2] == (20, 30)  # smaller than min_size: the whole image


def test_normalize_converts_boxes_and_types():
    img = np.full((10, 20, 3), 255, np.uint8)
    tensor, tgt = T.Normalize([0.5], [0.5])(img, _target([[0, 0, 10, 5], [5, 5, 20, 10.0001]]))
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 10, 20)
    assert torch.all(tensor == 1.0)
    torch.testing.assert_close(tgt["boxes"], torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.625, 0.75, 0.75, 0.5]]))
    assert tgt["labels"].dtype == torch.int64 and tgt["iscrowd"].dtype == torch.int64
    assert tgt["image_id"].tolist() == [7]


def test_fixed_pad_orientation_and_overshoot():
    pad = T.FixedPad(8, 12)
    out, _ = pad(torch.ones(3, 5, 9), {})
    assert out.shape == (3, 8, 12) and out[:, 5:].abs().sum() == 0 and out[:, :, 9:].abs().sum() == 0
    out, _ = pad(torch.ones(3, 9, 5), {})
    assert out.shape == (3, 12, 8)
    out, _ = pad(torch.ones(3, 6, 13), {})  # wider than the target: kept, only the height padded
    assert out.shape == (3, 8, 13)


def _aug(small_aug, **kw):
    return SimpleNamespace(**dict(small_aug, **kw))


def test_eval_transform_equals_tao_core_preprocess(small_aug):
    img = _image(96, 150, seed=3)  # 128 short side -> 200 long side, exactly the max
    tfm = T.build_transforms(_aug(small_aug, fixed_padding=False), "val")
    tensor, tgt = tfm(img, _target([[15, 12, 75, 60]]))
    ref = preprocess_image(img, short_side=128, max_size=200, mean=small_aug["input_mean"], std=small_aug["input_std"])
    assert tensor.shape == (3, 128, 200) and ref.shape == (3, 128, 200)
    np.testing.assert_array_equal(tensor.numpy(), ref)
    torch.testing.assert_close(tgt["boxes"], torch.tensor([[0.3, 0.375, 0.4, 0.5]]))
    # Exact input size (evaluate/inference input_height/width) = preprocess_image(size=...).
    tensor, _ = T.build_transforms(_aug(small_aug), "eval", input_size=(64, 96))(img, _target([]))
    np.testing.assert_array_equal(tensor.numpy(), preprocess_image(img, size=(64, 96)))
    # With fixed padding the real pixels are unchanged and the rest is zero.
    tensor, tgt = T.build_transforms(_aug(small_aug), "test")(img, _target([]))
    assert tensor.shape == (3, 128, 200) and tuple(tgt["size"].tolist()) == (128, 200)
    tensor, tgt = T.build_transforms(_aug(small_aug), "test")(_image(150, 90), _target([]))
    assert tensor.shape == (3, 200, 128) and tuple(tgt["size"].tolist()) == (200, 120)
    assert tensor[:, :, 120:].abs().sum() == 0


def test_train_fixed_padding_gives_constant_shapes(small_aug):
    random.seed(2)
    tfm = T.build_transforms(_aug(small_aug), "train")
    land, port = set(), set()
    for i in range(30):
        h, w = (int(v) for v in np.random.default_rng(i).integers(60, 400, size=2))
        tensor, tgt = tfm(_image(h, w, i), _target([[0, 0, w / 2, h / 2], [w / 3, h / 3, w, h]]))
        size = tuple(tgt["size"].tolist())
        (port if size[0] > size[1] else land).add(tuple(tensor.shape))
        assert ((tgt["boxes"] >= 0) & (tgt["boxes"] <= 1)).all()
        assert len(tgt["boxes"]) == len(tgt["labels"]) == len(tgt["area"]) == len(tgt["iscrowd"])
    assert land == {(3, 128, 200)} and port <= {(3, 200, 128)}


def test_train_without_fixed_padding_varies(small_aug):
    random.seed(3)
    tfm = T.build_transforms(_aug(small_aug, fixed_padding=False), "train")
    shapes = {tuple(tfm(_image(120, 180), _target([[0, 0, 90, 60]]))[0].shape) for _ in range(20)}
    assert len(shapes) > 1 and all(min(s[1:]) <= 128 and max(s[1:]) <= 200 for s in shapes)


def test_lsj_output_size_fixed(small_aug):
    random.seed(4)
    tfm = T.build_transforms(_aug(small_aug, fixed_random_crop=64), "train")
    assert isinstance(tfm.transforms[1], T.ResizeScale)
    for i, (h, w) in enumerate([(30, 40), (200, 100), (64, 64), (500, 700), (10, 300)]):
        tensor, tgt = tfm(_image(h, w, i), _target([[0, 0, w / 2, h / 2]]))
        assert tensor.shape == (3, 64, 64)
        sh, sw = tgt["size"].tolist()
        assert sh <= 64 and sw <= 64
        assert ((tgt["boxes"] >= 0) & (tgt["boxes"] <= 1)).all()


def test_build_transforms_rejects_unknown_split(small_aug):
    with pytest.raises(ValueError, match="split"):
        T.build_transforms(_aug(small_aug), "training")


def test_build_transforms_accepts_dict_and_tao_defaults():
    tfm = T.build_transforms({}, "train")  # every field defaulted as in the DINO table
    assert "RandomResize(sizes=[480, 512" in repr(tfm) and "FixedPad(short=800, long=1333)" in repr(tfm)
