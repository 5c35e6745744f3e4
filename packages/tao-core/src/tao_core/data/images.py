"""Image loading with the conventions every network expects: RGB, uint8, EXIF-upright.

Phones and cameras store pictures in sensor orientation and record the rotation in the EXIF
Orientation tag; viewers and annotation tools show the rotated picture, so the boxes refer to
the upright image. Loading without `exif_transpose` would pair boxes with a sideways image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tao_core.errors import TaoUserError

# EXIF Orientation values 5..8 are the transposed / 90-degree rotations that swap width and height.
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)

# What an image folder is searched for (inference folders), compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _open(path: str | os.PathLike) -> Image.Image:
    """Open lazily (header only); map every failure to a TaoUserError naming the file."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise TaoUserError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise TaoUserError(f"{path}: is a directory, expected an image file") from None
    except UnidentifiedImageError:
        raise TaoUserError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as e:
        raise TaoUserError(f"{path}: image too large to load safely ({e})") from None
    except OSError as e:
        raise TaoUserError(f"{path}: cannot read image ({e})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        # 16-bit grayscale (PNG/TIFF): Pillow's convert would clip at 255; keep the high byte instead.
        arr = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        # Going through RGBA avoids Pillow's palette-transparency warning; alpha is then dropped.
        img = img.convert("RGBA")
    # RGBA/LA drop alpha (same as TAO's PIL .convert("RGB")); CMYK/YCbCr/L/1/P convert natively.
    return img.convert("RGB")


def load_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode `path` into an HxWx3 uint8 RGB array, rotated upright by its EXIF Orientation.

    Grayscale, RGBA, palette, CMYK and 16-bit images are converted to RGB.
    Missing or undecodable files raise TaoUserError naming the file and the reason.
    """
    img = _open(path)
    try:
        with img:
            # load() raises on a truncated file (Pillow's LOAD_TRUNCATED_IMAGES stays False), so a
            # damaged image fails here rather than training on a half-grey picture.
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = _to_rgb(upright)
            arr = np.asarray(rgb, dtype=np.uint8)
    except TaoUserError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise TaoUserError(f"{path}: cannot decode image ({e})") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise TaoUserError(f"{path}: decoded to shape {arr.shape}, expected HxWx3")
    return np.ascontiguousarray(arr)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the upright image, reading only the file header (no pixel decode).

    Raises TaoUserError for a missing file or one whose header is not a known image format.
    """
    img = _open(path)
    with img:
        width, height = img.size
        try:
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a decodable image
            orientation = 1
    if orientation in _SWAPS_AXES:
        return height, width
    return width, height


def check_decodable(path: str | os.PathLike) -> tuple[int, int]:
    """Fully decode `path` (slow, catches truncated files) and return its upright (width, height)."""
    arr = load_image_rgb(path)
    return arr.shape[1], arr.shape[0]


def list_images(
    image_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    field: str = "dataset.infer_data_sources.image_dir",
) -> list[str]:
    """Image files (IMAGE_EXTENSIONS, case-insensitive) under each directory, recursively, sorted
    per directory, directories in the order given. A directory that is missing or holds no image
    is a TaoUserError naming `field`, the spec field the directories came from."""
    dirs = [image_dirs] if isinstance(image_dirs, (str, os.PathLike)) else list(image_dirs)
    paths = []
    for d in map(str, dirs):
        if not os.path.isdir(d):
            raise TaoUserError(f"{field}: {d} is not a directory")
        found = [os.path.join(root, f) for root, _, files in os.walk(d) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise TaoUserError(f"{field}: no {'/'.join(IMAGE_EXTENSIONS)} images in {d}")
        paths += sorted(found)
    return paths
