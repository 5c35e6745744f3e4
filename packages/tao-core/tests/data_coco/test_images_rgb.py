"""load_image_rgb / image_size: EXIF orientation, mode conversion, clear errors."""

import numpy as np
import pytest
from PIL import Image

from tao_core.data.images import check_decodable, image_size, load_image_rgb
from tao_core.errors import TaoUserError


def _left_red(w=40, h=20):
    """Landscape image whose left half is red and right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_exif_rotated_jpeg_loads_upright(tmp_path):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 40x20 shows as 20x40
    _left_red().save(path, quality=95, exif=exif.tobytes())

    arr = load_image_rgb(path)
    assert arr.shape == (40, 20, 3) and arr.dtype == np.uint8
    # After the 90-degree clockwise turn the stored left (red) half is on top.
    assert arr[2, 10, 0] > 200 and arr[2, 10, 2] < 60
    assert arr[-3, 10, 2] > 200 and arr[-3, 10, 0] < 60
    assert image_size(path) == (20, 40)


def test_no_exif_keeps_orientation(tmp_path):
    path = tmp_path / "plain.jpg"
    _left_red().save(path, quality=95)
    assert load_image_rgb(path).shape == (20, 40, 3)
    assert image_size(path) == (40, 20)


@pytest.mark.parametrize("mode,ext", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg"),
                                      ("I;16", "png"), ("LA", "png"), ("1", "png")])
def test_modes_become_rgb(tmp_path, mode, ext):
    path = tmp_path / f"img.{ext}"
    if mode == "I;16":  # full 16-bit range: 200 * 257 is 200 on the 8-bit scale
        img = Image.fromarray(np.full((6, 8), 200 * 257, np.uint16))
        assert img.mode == "I;16"
    else:
        img = Image.new("RGB", (8, 6), (200, 200, 200)).convert(mode)
    if mode == "P":
        img.info["transparency"] = 0
    img.save(path)
    arr = load_image_rgb(path)
    assert arr.shape == (6, 8, 3) and arr.dtype == np.uint8
    if mode not in ("1",):
        assert abs(int(arr[0, 0, 0]) - 200) < 8


def test_grayscale_replicated_to_three_channels(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8), mode="L").save(path)
    arr = load_image_rgb(path)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[5, 7, 0] == 47


def test_rgba_drops_alpha(tmp_path):
    path = tmp_path / "a.png"
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert load_image_rgb(path)[0, 0].tolist() == [10, 20, 30]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(TaoUserError, match=r"nope\.jpg: image file not found"):
        load_image_rgb(tmp_path / "nope.jpg")
    with pytest.raises(TaoUserError, match="not found"):
        image_size(tmp_path / "nope.jpg")


def test_garbage_file_is_reported(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(TaoUserError, match=r"bad\.jpg: not a readable image"):
        load_image_rgb(path)


def test_truncated_jpeg_fails_on_decode_not_header(tmp_path):
    path = tmp_path / "trunc.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (64, 64)  # the header alone is intact
    with pytest.raises(TaoUserError, match=r"trunc\.jpg: cannot decode image"):
        check_decodable(path)


def test_shared_raccoon_grayscale_becomes_rgb(shared_data):
    if shared_data is None:
        pytest.skip("shared/data not available")
    path = shared_data / "raccoon" / "train" / "images" / "raccoon-150.jpg"
    with Image.open(path) as img:
        assert img.mode == "L"
    arr = load_image_rgb(path)
    assert arr.ndim == 3 and arr.shape[2] == 3
    assert image_size(path) == (arr.shape[1], arr.shape[0])
