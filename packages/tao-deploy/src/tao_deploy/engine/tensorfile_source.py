"""INT8 calibration batches from a TAO tensorfile (`--cal_data_file`, DetectNet_v2's calibration_tensorfile).

    from tao_deploy import Calibration, build_engine
    from tao_deploy.engine.tensorfile_source import tensorfile_batches
    data = tensorfile_batches("calibration.tensor", max_batches=10)
    build_engine("model.onnx", "model.engine", "int8", calibration=Calibration(data=data), max_batch=8)

Records are read in order, like TAO's TensorfileCalibrator: record i is batch i, and with
`batch_size` each batch is its first `batch_size` samples (a record with fewer is an error).
A record that is an array feeds the model's only input (or `input_name`); a record that is a
dict feeds the inputs its keys name, or only `input_name` when given.

The file is opened and checked when the source is made (exists, is a tensorfile, has the
requested number of batches); `build_engine` calls `validate(inputs, profile)` before any work,
which compares every batch's shape (metadata only, no data read) with the ONNX inputs (C, H, W
and the batch range of the optimization profile).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tao_core.data.tensorfile import TensorFile, TensorFileWriter
from tao_core.errors import TaoUserError
from tao_deploy.engine.onnx_io import TensorSpec
from tao_deploy.engine.profile import Profile

log = logging.getLogger(__name__)


class TensorfileBatches:
    """A re-iterable batch source over a tensorfile (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike,
        input_name: str | None = None,
        max_batches: int | None = None,
        batch_size: int | None = None,
    ):
        self.path = Path(path)
        self.input_name = input_name
        if max_batches is not None and max_batches <= 0:
            raise TaoUserError(f"the number of calibration batches must be > 0, got {max_batches}")
        if batch_size is not None and batch_size <= 0:
            raise TaoUserError(f"the calibration batch size must be > 0, got {batch_size}")
        self.batch_size = batch_size
        with TensorFile(self.path) as tf:  # raises for a missing / non-HDF5 / damaged file
            available = len(tf)
            if available == 0:
                raise TaoUserError(f"calibration tensorfile {self.path} holds no batches")
            if max_batches is not None and available < max_batches:
                raise TaoUserError(
                    f"calibration tensorfile {self.path} holds {available} batches, but {max_batches} are requested "
                    "(cal_batches / --batches); generate a larger tensorfile or lower the number of batches"
                )
            self.num_batches = available if max_batches is None else max_batches
            self._shapes = [self._feed_shapes(tf.record_shapes(i), i) for i in range(self.num_batches)]
            for i in range(self.num_batches):
                self._check_dtypes(tf.record_dtypes(i), i)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        with TensorFile(self.path) as tf:
            for i in range(self.num_batches):
                yield self._select(tf[i], i)

    # ---- shapes ------------------------------------------------------------------------

    def _feed_shapes(self, shapes, index: int) -> dict[str | None, tuple[int, ...]]:
        """{input name (None: the model's only input): batch shape after slicing} for record `index`."""
        if isinstance(shapes, tuple):
            fed = {self.input_name: shapes}
        elif self.input_name is not None:
            if self.input_name not in shapes:
                raise TaoUserError(
                    f"calibration tensorfile {self.path}: record {index} has arrays {sorted(shapes)}, "
                    f"not {self.input_name!r}"
                )
            fed = {self.input_name: shapes[self.input_name]}
        else:
            nested = sorted(k for k, v in shapes.items() if isinstance(v, dict))
            if nested:
                raise TaoUserError(
                    f"calibration tensorfile {self.path}: record {index} has nested groups {nested}; "
                    "records must be arrays or dicts input name -> array"
                )
            fed = dict(shapes)
        out = {}
        for name, shape in fed.items():
            if isinstance(shape, dict) or len(shape) == 0:
                what = "a group" if isinstance(shape, dict) else "a scalar"
                raise TaoUserError(
                    f"calibration tensorfile {self.path}: record {index}{_named(name)} is {what}, not a batch"
                )
            if self.batch_size is not None:
                if shape[0] < self.batch_size:
                    raise TaoUserError(
                        f"calibration tensorfile {self.path}: record {index}{_named(name)} holds {shape[0]} samples, "
                        f"fewer than the calibration batch size {self.batch_size}"
                    )
                shape = (self.batch_size, *shape[1:])
            out[name] = tuple(shape)
        return out

    def _check_dtypes(self, dtypes, index: int) -> None:
        if isinstance(dtypes, dict):
            dtypes = {self.input_name: dtypes[self.input_name]} if self.input_name is not None else dtypes
        else:
            dtypes = {self.input_name: dtypes}
        for name, dt in dtypes.items():
            if not isinstance(dt, dict) and dt.kind != "f":
                raise TaoUserError(
                    f"calibration tensorfile {self.path}: record {index}{_named(name)} holds {dt}, "
                    "not preprocessed float data"
                )

    def validate(self, inputs: list[TensorSpec], profile: Profile | None = None) -> None:
        """Check every batch against the model's inputs (and the profile's ranges) before building."""
        names = [s.name for s in inputs]
        specs = {s.name: s for s in inputs}
        for index, fed in enumerate(self._shapes):
            if None in fed:  # a bare-array record
                if len(names) != 1:
                    raise TaoUserError(
                        f"calibration tensorfile {self.path}: the model has inputs {names}; its records must be dicts "
                        "input name -> array (or give input_name for a single one)"
                    )
                fed = {names[0]: fed[None]}
            if set(fed) != set(names):
                raise TaoUserError(
                    f"calibration tensorfile {self.path}: record {index} feeds {sorted(fed)}, the model's inputs are "
                    f"{names}"
                )
            for name, shape in fed.items():
                _check_shape(self.path, index, name, shape, specs[name], profile.get(name) if profile else None)

    def _select(self, record, index: int):
        if isinstance(record, dict):
            record = {self.input_name: record[self.input_name]} if self.input_name is not None else record
            batch = {k: _cut(np.asarray(v), self.batch_size) for k, v in record.items()}
        else:
            arr = _cut(np.asarray(record), self.batch_size)
            batch = {self.input_name: arr} if self.input_name is not None else arr
        return batch

    def __repr__(self) -> str:
        return f"TensorfileBatches({str(self.path)!r}, batches={self.num_batches}, batch_size={self.batch_size})"


def tensorfile_batches(
    path: str | os.PathLike,
    input_name: str | None = None,
    max_batches: int | None = None,
    batch_size: int | None = None,
) -> TensorfileBatches:
    """Calibration batches from a TAO tensorfile, for `Calibration(data=...)`.

    `max_batches`: how many batches to use (None: all); the file must hold at least that many.
    `batch_size`: use the first `batch_size` samples of each record (TAO's calibrator does the
    same); None: the whole record. `input_name`: the ONNX input that the records feed.
    """
    return TensorfileBatches(path, input_name, max_batches, batch_size)


def write_calibration_tensorfile(path: str | os.PathLike, batches: Iterable, input_name: str | None = None) -> int:
    """Dump preprocessed batches (arrays, or dicts input -> array) into a tensorfile; returns the count.

    Written atomically, in TAO's layout, as float32. Array batches (or `input_name` given) keep
    TAO's one-shape rule; dict batches of several inputs are written without it.
    """
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise TaoUserError(f"no calibration batches to write into {path}")
    multi = isinstance(first, dict) and len(first) > 1
    with TensorFileWriter(path, same_shape=not multi) as w:
        for batch in itertools.chain([first], it):
            if isinstance(batch, dict):
                w.write({k: np.asarray(v, dtype=np.float32) for k, v in batch.items()})
            else:
                arr = np.asarray(batch, dtype=np.float32)
                w.write({input_name: arr} if input_name else arr)
        return w.count


class TensorfileFromImages:
    """TAO's `--cal_data_file` together with `--cal_image_dir`: when the tensorfile does not exist,
    it is written from `image_batches` (preprocessed images) at the first iteration, i.e. during
    calibration, after every check; then (and on later builds) batches are read from it."""

    def __init__(self, path: str | os.PathLike, image_batches, input_name: str | None = None):
        self.path, self.image_batches, self.input_name = Path(path), image_batches, input_name

    def __len__(self) -> int:
        return len(self.image_batches)

    def __iter__(self):
        if not self.path.exists():
            n = write_calibration_tensorfile(self.path, self.image_batches, self.input_name)
            log.info("wrote calibration tensorfile %s (%d batches)", self.path, n)
        yield from TensorfileBatches(self.path, self.input_name, max_batches=len(self))


def _cut(arr: np.ndarray, batch_size: int | None) -> np.ndarray:
    return arr if batch_size is None else arr[:batch_size]


def _named(name) -> str:
    return f", input {name!r}" if name else ""


def _check_shape(path, index, name, shape, spec: TensorSpec, rng) -> None:
    model_shape = tuple(spec.shape)
    if len(shape) != len(model_shape):
        raise TaoUserError(
            f"calibration tensorfile {path}: record {index} has batch shape {shape} (rank {len(shape)}), but the "
            f"model's input {name!r} is {_fmt_model(model_shape)} (rank {len(model_shape)})"
        )
    for i, (got, want) in enumerate(zip(shape, model_shape)):
        if i == 0:
            continue
        fixed = isinstance(want, int) and want > 0
        lo, hi = (rng.min[i], rng.max[i]) if rng is not None else (want, want) if fixed else (None, None)
        if (fixed and got != want) or (lo is not None and not lo <= got <= hi):
            expected = f"{want}" if fixed else f"{lo}..{hi}"
            raise TaoUserError(
                f"calibration tensorfile {path}: record {index} has batch shape {shape}, but the model's input "
                f"{name!r} is {_fmt_model(model_shape)}: dim {i} is {got}, expected {expected} (the tensorfile was made "
                "for another input size, or another model)"
            )
    b, want_b = shape[0], model_shape[0]
    if isinstance(want_b, int) and want_b > 0 and b != want_b:
        raise TaoUserError(
            f"calibration tensorfile {path}: batches of {b} samples, but the model's input {name!r} has a fixed batch "
            f"of {want_b}; use a tensorfile with batches of {want_b} (or the calibration batch size {want_b})"
        )
    if rng is not None and not rng.min[0] <= b <= rng.max[0]:
        raise TaoUserError(
            f"calibration tensorfile {path}: batches of {b} samples are outside the engine's batch range "
            f"{rng.min[0]}..{rng.max[0]} for input {name!r}; set the calibration batch size within it (or widen the "
            "min/max batch size)"
        )


def _fmt_model(shape) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else str(d or "?") for d in shape) + ")"
