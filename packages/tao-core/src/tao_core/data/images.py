"""Image loading with the conventions every network expects: RGB, uint8, EXIF-upright.

Phones and cameras store pictures in sensor orientation and record the rotation in the EXIF
Orientation tag; viewers and annotation tools show the rotated picture, so the boxes refer to
the upright image. Loading without `exif_transpose` would pair boxes with a sideways image.

Truncated files (a copy cut short: the last bytes of a JPEG missing, which browsers and OpenCV
display with the missing end grey) are decided once, by `decode_check` at load time:
- cut short, with at most TRUNCATION_TOLERANCE of the rows missing: usable; loads with the
  missing part filled (grey), and a warning names the file;
- cut so short that more is missing, or corrupt (not just short), or not an image: an error.
`load_image_rgb(path, allow_truncated=True)` is how a dataset loads an image that check
accepted as truncated; without it a truncated file is an error, as Pillow decides by default.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tao_core.errors import TaoUserError

# EXIF Orientation values 5..8 are the transposed / 90-degree rotations that swap width and height.
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)

# What an image folder is searched for (inference folders), compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# The largest share of an image's rows a truncated file may be missing and still be used.
TRUNCATION_TOLERANCE = 0.05
# Pillow's truncation switch is process-wide: tolerant decodes take this lock and restore it.


class _TruncationSwitch:
    """Pillow's only switch for decoding a cut-short file is the process-wide
    ImageFile.LOAD_TRUNCATED_IMAGES. While one thread has it on, a strict decode in another
    thread would silently accept a truncated file, so strict decodes (many, in parallel) and
    tolerant ones (rare, one at a time) exclude each other; a waiting tolerant decode goes first."""

    def __init__(self):
        self._cond = threading.Condition()
        self._strict = 0
        self._tolerant = False
        self._waiting = 0

    @contextlib.contextmanager
    def strict(self):
        with self._cond:
            while self._tolerant or self._waiting:
                self._cond.wait()
            self._strict += 1
        try:
            yield
        finally:
            with self._cond:
                self._strict -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def tolerant(self):
        with self._cond:
            self._waiting += 1
            while self._tolerant or self._strict:
                self._cond.wait()
            self._waiting -= 1
            self._tolerant = True
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
            with self._cond:
                self._tolerant = False
                self._cond.notify_all()


_TRUNCATION = _TruncationSwitch()


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


def _is_truncation(err: Exception) -> bool:
    return isinstance(err, OSError) and "truncated" in str(err).lower()


def _decode(path, tolerate_truncation: bool, draft: bool = False) -> np.ndarray:
    """Pixels of `path` as HxWx3 uint8 RGB, upright. draft: a JPEG decoded at 1/8 scale (every
    byte of its data is still decoded, so truncation and corruption are still found)."""
    img = _open(path)
    with img:
        if draft and img.format == "JPEG":
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
        with _TRUNCATION.tolerant() if tolerate_truncation else _TRUNCATION.strict():
            img.load()
        arr = np.asarray(_to_rgb(ImageOps.exif_transpose(img)), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise TaoUserError(f"{path}: decoded to shape {arr.shape}, expected HxWx3")
    return np.ascontiguousarray(arr)


def missing_rows_fraction(arr: np.ndarray) -> float:
    """Share of the rows at the bottom of a tolerantly decoded image that are one flat value:
    what the decoder filled in for the data missing from a truncated file."""
    flat = arr.reshape(arr.shape[0], -1)
    const = flat.max(axis=1) == flat.min(axis=1)
    varied = np.flatnonzero(~const)
    n = len(const) if varied.size == 0 else len(const) - 1 - int(varied[-1])
    return n / max(1, arr.shape[0])


def _decode_deciding(path, draft: bool = False) -> tuple[np.ndarray, float | None]:
    """(pixels, None) for an intact file, (pixels, missing fraction) for a tolerated truncation;
    TaoUserError for anything else."""
    try:
        return _decode(path, False, draft), None
    except TaoUserError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        if not _is_truncation(e):
            raise TaoUserError(f"{path}: cannot decode image ({e})") from None
    try:
        arr = _decode(path, True, draft)
    except TaoUserError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise TaoUserError(f"{path}: cannot decode image: the file is cut short ({e})") from None
    missing = missing_rows_fraction(arr)
    if missing > TRUNCATION_TOLERANCE:
        raise TaoUserError(
            f"{path}: cannot decode image: the file is cut short and {missing:.0%} of the image is missing "
            f"(at most {TRUNCATION_TOLERANCE:.0%} is tolerated); copy the file again"
        )
    return arr, missing


def truncation_warning(path, missing: float) -> str:
    return (f"{path}: the file is cut short (truncated); it is used with the missing end filled grey "
            f"({missing:.1%} of the rows); copy the file again to use it whole")


def load_image_rgb(path: str | os.PathLike, allow_truncated: bool = False) -> np.ndarray:
    """Decode `path` into an HxWx3 uint8 RGB array, rotated upright by its EXIF Orientation.

    Grayscale, RGBA, palette, CMYK and 16-bit images are converted to RGB.
    Missing or undecodable files raise TaoUserError naming the file and the reason; so does a
    truncated file, unless allow_truncated (what decode_check accepted: see the module docstring).
    """
    if allow_truncated:
        return _decode_deciding(path)[0]
    try:
        return _decode(path, False)
    except TaoUserError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise TaoUserError(f"{path}: cannot decode image ({e})") from None


def load_image_checked(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """(pixels, warning or None): a tolerated truncation loads with a warning naming the file
    (inference folders, which have no load-time check); anything worse is a TaoUserError."""
    arr, missing = _decode_deciding(path)
    return arr, (truncation_warning(path, missing) if missing is not None else None)


@dataclass(frozen=True)
class ImageCheck:
    """What decode_check decided about one file: its upright size, and the share of rows missing
    when it is a tolerated truncation (None when intact)."""

    width: int
    height: int
    truncated: float | None = None


_CHECKED: dict[tuple, ImageCheck] = {}  # (path, size, mtime) -> decision, for this process


def decode_check(path: str | os.PathLike) -> ImageCheck:
    """Fully decode `path` once and decide it (see the module docstring); TaoUserError if unusable.

    Decisions are cached per (path, size, mtime), so train, val and a later evaluate in one
    process decode each file once. A JPEG is decoded at 1/8 scale: every byte of its data is
    still decoded (that is what finds truncation and corruption) at a fraction of the cost.
    """
    try:
        st = os.stat(path)
        cache_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        cache_key = None
    if cache_key is not None and cache_key in _CHECKED:
        return _CHECKED[cache_key]
    result = _check_once(path)
    if cache_key is not None:
        _CHECKED[cache_key] = result
    return result


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied, from the header alone."""
    width, height = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a decodable image
        orientation = 1
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _check_once(path) -> ImageCheck:
    """One open: upright size from the header, then every byte of the pixel data decoded (a JPEG
    at 1/8 scale) and converted as a dataset would; a truncation goes to _decode_deciding."""
    img = _open(path)
    with img:
        width, height = _upright_size(img)
        try:
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            with _TRUNCATION.strict():
                img.load()
            _to_rgb(img)
            return ImageCheck(width, height, None)
        except (OSError, SyntaxError, ValueError) as e:
            if not _is_truncation(e):
                raise TaoUserError(f"{path}: cannot decode image ({e})") from None
    _, missing = _decode_deciding(path, draft=True)
    return ImageCheck(width, height, missing)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the upright image, reading only the file header (no pixel decode).

    Raises TaoUserError for a missing file or one whose header is not a known image format.
    """
    img = _open(path)
    with img:
        return _upright_size(img)


def check_decodable(path: str | os.PathLike) -> tuple[int, int]:
    """Fully decode `path` (catches truncated and corrupt files) and return its upright
    (width, height); a tolerated truncation passes (see decode_check)."""
    checked = decode_check(path)
    return checked.width, checked.height


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
