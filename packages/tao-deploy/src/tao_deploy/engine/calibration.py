"""INT8 calibration inputs and the TensorRT-format calibration cache.

Where batches come from is the caller's business (an image folder with the network's own
preprocessing, a DetectNet_v2 tensorfile, a training dataloader): they hand over an iterable
of preprocessed float32 batches, or a callable returning one. This module provides the generic
parts: listing and checking calibration images, the adapter to onnxruntime's
`CalibrationDataReader`, and reading / writing the calibration cache. `tensorfile_batches`
(from `tensorfile_source`, re-exported here) reads a TAO tensorfile (`cal_data_file`).

A batch source may define `validate(inputs, profile)`: `build_engine` calls it before any
work (the tensorfile source checks its batch count and shapes against the ONNX inputs there).

Calibration cache (the file DeepStream's `int8-calib-file` and TensorRT's calibrators read)::

    TRT-<version code>-<algorithm>
    <tensor name>: <scale as 8 hex digits>
    ...

`<version code>` is TensorRT's integer version (major*10000 + minor*100 + patch from TensorRT 10,
e.g. 100300 for 10.3.0; major*1000 + minor*100 + patch before, e.g. 8601). `<algorithm>` is
`EntropyCalibration2` or `MinMaxCalibration`. The scale is amax / 127 (symmetric INT8, zero point
0) and its 8 hex digits are the IEEE-754 float32 bit pattern, most significant byte first
(`struct.pack(">f", scale).hex()`): 1/127 is `3c010204`. Tensor names may contain ':'
(`output_cov/Sigmoid:0`), so a line splits at its LAST ': '.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tao_core.data.images import IMAGE_EXTENSIONS
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")
# Calibration images are found with the one extension list every image folder uses
# (tao_core.data.images.IMAGE_EXTENSIONS, a superset of the seed's .jpg / .jpeg / .png).
# TensorRT has no percentile calibrator: percentile ranges are written under the entropy name,
# which is the calibrator DeepStream's nvinfer reads caches with.
CACHE_ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "percentile": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
}
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
# Written when tensorrt is not installed: 10.3.0 is the TensorRT of DeepStream 7.1 / JetPack 6.
DEFAULT_TRT_VERSION = "10.3.0"

Batch = np.ndarray | dict[str, np.ndarray]
BatchSource = Iterable[Batch] | Callable[[], Iterable[Batch]]


@dataclass
class Calibration:
    """How to get INT8 scales: from `cache_file` when it exists and is valid, else from `data`.

    `data`: preprocessed batches (one array per batch for a single-input model, or a dict
    input name -> array), or a callable returning them. `op_types` / `exclude_nodes` narrow
    which nodes get Q/DQ (see precision.INT8_OP_TYPES). `percentile` is used by "percentile".
    """

    data: BatchSource | None = None
    method: str = "entropy"
    cache_file: str | os.PathLike | None = None
    percentile: float = 99.999
    op_types: tuple[str, ...] | None = None
    exclude_nodes: tuple[str, ...] = field(default_factory=tuple)
    keep_float: tuple[str, ...] = field(default_factory=tuple)  # patterns, see precision.keep_float_nodes

    def __post_init__(self):
        if self.method not in METHODS:
            raise TaoUserError(f"calibration method {self.method!r} is not one of {list(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise TaoUserError(f"calibration percentile must be in (0, 100], got {self.percentile}")

    def cached(self) -> CalibrationCache | None:
        """The cache to reuse, or None when there is none (a corrupt one raises)."""
        if self.cache_file is None or not Path(self.cache_file).is_file():
            return None
        return read_cache(self.cache_file)


# ---- calibration images -------------------------------------------------------------------


def list_calibration_images(
    image_dirs: str | os.PathLike | Iterable[str | os.PathLike], batch_size: int, batches: int
) -> list[Path]:
    """The first batch_size x batches images found (recursively, sorted) in `image_dirs`.

    Checks everything up front, before any model work: folders exist, there are enough
    images, and each chosen image can be opened (header check, no decoding).
    """
    if batch_size <= 0 or batches <= 0:
        raise TaoUserError(f"cal_batch_size and cal_batches must be > 0, got {batch_size} and {batches}")
    dirs, found = find_images(image_dirs)
    needed = batch_size * batches
    if len(found) < needed:
        raise TaoUserError(
            f"calibration needs cal_batch_size x cal_batches = {batch_size} x {batches} = {needed} images, "
            f"but {', '.join(map(str, dirs))} hold(s) {len(found)}; add images or lower cal_batches"
        )
    chosen = found[:needed]
    check_images_readable(chosen)
    return chosen


def find_images(image_dirs) -> tuple[list, list[Path]]:
    """(the folders, every image in them: recursively, sorted per folder, folders in the given order)."""
    dirs = [image_dirs] if isinstance(image_dirs, (str, os.PathLike)) else list(image_dirs)
    if not dirs:
        raise TaoUserError("no calibration image directory given (cal_image_dir)")
    found: list[Path] = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise TaoUserError(f"calibration image directory {d} does not exist")
        found += sorted(p for p in d.rglob("*") if p.name.lower().endswith(IMAGE_EXTENSIONS) and p.is_file())
    return dirs, found


def held_out_images(image_dirs, used: int, count: int) -> list[Path]:
    """Up to `count` images of `image_dirs` after the first `used` (the calibration ones), spread
    evenly over the rest: images the engine's agreement with FP32 is checked on."""
    rest = find_images(image_dirs)[1][used:]
    if len(rest) <= count:
        return rest
    step = len(rest) / count
    return [rest[int(i * step)] for i in range(count)]


def check_images_readable(paths: Iterable[Path], what: str = "calibration image") -> None:
    """Header check of each image (no decoding); the first unreadable one is a TaoUserError '<what> <path> ...'."""
    from PIL import Image, UnidentifiedImageError  # a tao-core dependency

    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise TaoUserError(f"{what} {p} cannot be read: {e}") from None


class ImageBatches:
    """Stacks `preprocess(path) -> CHW float32 array` over `paths` into batches (re-iterable)."""

    def __init__(self, paths: list[Path], batch_size: int, preprocess: Callable[[Path], np.ndarray]):
        self.paths, self.batch_size, self.preprocess = list(paths), batch_size, preprocess

    def __len__(self) -> int:
        return len(self.paths) // self.batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            chunk = self.paths[i * self.batch_size : (i + 1) * self.batch_size]
            yield np.stack([self._one(p) for p in chunk]).astype(np.float32, copy=False)

    def _one(self, path: Path) -> np.ndarray:
        try:
            return self.preprocess(path)
        except (OSError, ValueError) as e:
            raise TaoUserError(f"calibration image {path} cannot be read: {e}") from None


# ---- onnxruntime adapter ------------------------------------------------------------------


def make_data_reader(source: BatchSource, input_names: list[str], dtypes: dict[str, str] | None = None):
    """An onnxruntime.quantization.CalibrationDataReader over `source` (an iterable or a callable)."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchDataReader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(source() if callable(source) else source)
            self.count = 0

        def get_next(self):
            batch = next(self._it, None)
            if batch is None:
                return None
            self.count += 1
            return _as_feed(batch, input_names, dtypes or {}, self.count)

    return BatchDataReader()


def _as_feed(batch: Batch, names: list[str], dtypes: dict[str, str], index: int) -> dict[str, np.ndarray]:
    if not isinstance(batch, dict):
        if len(names) != 1:
            raise TaoUserError(f"the model has inputs {names}: calibration batches must be dicts name -> array")
        batch = {names[0]: batch}
    if set(batch) != set(names):
        raise TaoUserError(f"calibration batch {index} has inputs {sorted(batch)}, the model has {names}")
    feed = {}
    for name, arr in batch.items():
        arr = np.asarray(arr)
        if arr.dtype.kind != "f":
            raise TaoUserError(f"calibration batch {index}, input {name!r}: expected floats, got {arr.dtype}")
        feed[name] = np.ascontiguousarray(arr, dtype=dtypes.get(name, "float32"))
    return feed


# ---- TensorRT calibration cache -----------------------------------------------------------


@dataclass(frozen=True)
class CalibrationCache:
    version: int
    algorithm: str
    scales: dict[str, float]  # tensor name -> amax / 127

    def amax(self) -> dict[str, float]:
        return {k: v * 127.0 for k, v in self.scales.items()}


def trt_version_code(version: str) -> int:
    """'10.3.0' -> 100300, '8.6.1' -> 8601 (TensorRT's NV_TENSORRT_VERSION)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r}")
    major, minor, patch = (int(g or 0) for g in m.groups())
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def installed_trt_version() -> str | None:
    try:
        import tensorrt  # noqa: F401  (optional; only its version string is needed)
    except Exception:  # ImportError, or a broken install failing on its shared libraries
        return None
    return tensorrt.__version__


def format_cache(amax: dict[str, float], method: str, trt_version: str | None = None) -> str:
    version = trt_version or installed_trt_version() or DEFAULT_TRT_VERSION
    lines = [f"TRT-{trt_version_code(version)}-{CACHE_ALGORITHMS[method]}"]
    for name, a in amax.items():
        # A tensor that is identically 0 would get scale 0, which TensorRT cannot use: use the
        # smallest normal float32 so the line stays valid.
        scale = max(float(a) / 127.0, float(np.finfo(np.float32).tiny))
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def write_cache(path, amax: dict[str, float], method: str, trt_version: str | None = None) -> None:
    atomic_write_text(path, format_cache(amax, method, trt_version))


def read_cache(path) -> CalibrationCache:
    """Parse a calibration cache; anything malformed is a TaoUserError naming file and line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise TaoUserError(f"calibration cache {path} is not readable text ({e}); delete it to recalibrate") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = re.fullmatch(r"TRT-(\d+)-(\w+)", lines[0]) if lines else None
    if head is None or head.group(2) not in KNOWN_ALGORITHMS:
        raise TaoUserError(
            f"calibration cache {path} is corrupt: the first line should be TRT-<version>-<algorithm>; "
            "delete it to recalibrate"
        )
    scales = {}
    for no, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        try:
            if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{8}", value):
                raise ValueError
            (scale,) = struct.unpack(">f", bytes.fromhex(value))
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError
        except ValueError:
            raise TaoUserError(
                f"calibration cache {path} is corrupt at line {no}: {line[:80]!r} "
                "(expected '<tensor>: <8 hex digits>'); delete it to recalibrate"
            ) from None
        scales[name] = scale
    if not scales:
        raise TaoUserError(f"calibration cache {path} holds no scales; delete it to recalibrate")
    return CalibrationCache(int(head.group(1)), head.group(2), scales)


# The tensorfile source (`cal_data_file`) lives in its own module; re-exported for callers of this one.
from tao_deploy.engine.tensorfile_source import TensorfileBatches, tensorfile_batches  # noqa: E402, F401
