"""TAO's TensorFile: a sequence of numpy records in one HDF5 file (INT8 calibration batches).

DetectNet_v2's `calibration_tensorfile` task dumps preprocessed training batches into one, and
INT8 engine builds read it back batch by batch (`--cal_data_file`). The layout is TAO's own
(`TensorFile` of the TF1 backend), so files move between TAO and this implementation both ways:

- root attribute `count`: the number of records;
- root attribute `shape` (optional): the shape every array in the file has, written when the
  writer enforces one shape (the default, as in TAO);
- one group per record, named `_tensorfile_array_key__<i>` (i = 0 .. count-1);
- in a record's group, one gzip-compressed dataset per array. A record that is a dict of arrays
  keeps its keys as dataset names (a nested dict becomes a subgroup); a record that is a bare
  array is stored under the single key `_tensorfile_array_key_` and reads back as an array.

Needs h5py, which tao-core does not install (`pip install h5py`): it is imported only when a
tensorfile is written or read, and its absence is a TaoUserError saying so. tao-deploy depends
on it. No torch, no tensorflow.

    with TensorFileWriter("cal.tensorfile") as w:
        for batch in batches:          # e.g. float32 (N, C, H, W)
            w.write(batch)
    with TensorFile("cal.tensorfile") as tf:
        print(len(tf), tf.shape, tf[0].dtype)
    for batch in read_tensorfile("cal.tensorfile"):
        ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from tao_core.errors import TaoUserError
from tao_core.io.atomic import create_file, fsync_dir, temporary_name

ARRAY_KEY = "_tensorfile_array_key_"  # dataset name of a record that is a bare array
GROUP_PREFIX = "_tensorfile_array_key_"  # record i lives in group f"{GROUP_PREFIX}_{i}"

Record = np.ndarray | dict  # dict values: arrays or nested dicts


def group_name(index: int) -> str:
    """The HDF5 group of record `index`: `_tensorfile_array_key__<index>` (TAO's name)."""
    return f"{GROUP_PREFIX}_{index}"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise TaoUserError(
            "reading or writing a tensorfile (TAO's HDF5 calibration data) needs h5py: pip install h5py"
        ) from None
    return h5py


# ---- writing ------------------------------------------------------------------------------


class TensorFileWriter:
    """Writes records into a new tensorfile at `path`, atomically.

    Records go to a temporary file in the destination's folder; `close()` (or leaving the
    `with` block normally) renames it onto `path`, so a reader never sees a half-written file
    and an interrupted run leaves the previous file, if any, in place. Leaving the block by an
    exception (or `abort()`) discards everything.

    `shape`: the shape every array must have (stored as the `shape` attribute). Without it and
    with `same_shape=True` (TAO's default), the first array's shape becomes the file's shape;
    `same_shape=False` allows arrays of different shapes (e.g. records holding several model
    inputs) and writes no `shape` attribute. `overwrite=False` refuses an existing `path`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, ...] | None = None,
        *,
        same_shape: bool = True,
        overwrite: bool = True,
    ):
        h5py = _h5py()
        self.path = Path(path)
        if not overwrite and self.path.exists():
            raise TaoUserError(f"tensorfile {self.path} already exists; refusing to overwrite it")
        if self.path.is_dir():
            raise TaoUserError(f"tensorfile path {self.path} is a directory")
        self._shape = None if shape is None else _as_shape(shape)
        self._same_shape = same_shape or shape is not None
        self._overwrite = overwrite
        self._count = 0
        self._tmp: str | None = None
        self._db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # our atomic writes' temporary (umask mode, recognisable when a kill leaves it behind)
            self._tmp = str(self.path.parent / temporary_name(self.path.name))
            os.close(create_file(self._tmp))
            self._db = h5py.File(self._tmp, "w")
        except OSError as e:
            self._discard()
            raise TaoUserError(f"cannot write tensorfile {self.path}: {e}") from None
        self._db.attrs["count"] = 0
        if self._shape is not None:
            self._db.attrs["shape"] = np.asarray(self._shape, dtype=np.int64)

    @property
    def count(self) -> int:
        """Records written so far."""
        return self._count

    @property
    def shape(self) -> tuple[int, ...] | None:
        return self._shape

    def write(self, record: Record) -> int:
        """Append one record (an array, or a dict of arrays / nested dicts); returns its index."""
        if self._db is None:
            raise TaoUserError(f"tensorfile {self.path} is closed; no more records can be written")
        index = self._count
        tree = {ARRAY_KEY: record} if isinstance(record, np.ndarray) else record
        if not isinstance(tree, Mapping):
            raise TaoUserError(
                f"tensorfile record {index}: expected a numpy array or a dict of arrays, got {type(record).__name__}"
            )
        arrays = list(_flatten(tree, index, ""))  # checks everything before anything is written
        if self._same_shape:
            expected = self._shape
            for key, arr in arrays:
                expected = expected if expected is not None else arr.shape
                if arr.shape != expected:
                    where = "" if key == ARRAY_KEY else f", array {key!r}"
                    raise TaoUserError(
                        f"tensorfile record {index}{where}: shape {arr.shape} differs from the file's shape "
                        f"{expected} (every array in a tensorfile has one shape; pass same_shape=False to allow "
                        "several)"
                    )
            if self._shape is None and arrays:
                self._shape = arrays[0][1].shape
                self._db.attrs["shape"] = np.asarray(self._shape, dtype=np.int64)
        group = self._db.create_group(group_name(index))
        for key, arr in arrays:
            # gzip as TAO writes; HDF5 cannot filter a scalar (shape ()) dataset.
            group.create_dataset(key, data=arr, **({"compression": "gzip"} if arr.ndim else {}))
        self._count += 1
        self._db.attrs["count"] = self._count
        return index

    def close(self) -> Path:
        """Finish the file and move it onto `path` (idempotent); returns `path`."""
        if self._db is None:
            return self.path
        db, self._db = self._db, None
        try:
            db.close()
            with open(self._tmp, "rb") as f:
                os.fsync(f.fileno())
            if not self._overwrite and self.path.exists():
                raise TaoUserError(f"tensorfile {self.path} already exists; refusing to overwrite it")
            os.replace(self._tmp, self.path)
            self._tmp = None
        except OSError as e:
            self._discard()
            raise TaoUserError(f"cannot write tensorfile {self.path}: {e}") from None
        except BaseException:
            self._discard()
            raise
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Discard what was written; `path` is left as it was."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        self._discard()

    def _discard(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> TensorFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):  # a writer dropped without close(): leave no temporary file behind
        with contextlib.suppress(Exception):
            self.abort()


def write_tensorfile(path: str | os.PathLike, records, shape=None, *, same_shape: bool = True) -> int:
    """Write an iterable of records into `path` (atomically); returns how many were written."""
    with TensorFileWriter(path, shape, same_shape=same_shape) as w:
        for record in records:
            w.write(record)
        return w.count


def _flatten(tree: Mapping, index: int, prefix: str) -> Iterator[tuple[str, np.ndarray]]:
    """(HDF5 path inside the record group, array) pairs; validates keys and values."""
    if not tree:
        raise TaoUserError(
            f"tensorfile record {index}: {'sub-dict ' + repr(prefix) if prefix else 'the dict'} is empty"
        )
    for key, value in tree.items():
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            raise TaoUserError(
                f"tensorfile record {index}: key {key!r} is not allowed (a non-empty string without '/')"
            )
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from _flatten(value, index, path)
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufc":
                raise TaoUserError(f"tensorfile record {index}, array {path!r}: dtype {value.dtype} is not numeric")
            yield path, value
        else:
            raise TaoUserError(
                f"tensorfile record {index}, key {path!r}: only numpy arrays or dicts of them can be written, "
                f"got {type(value).__name__}"
            )


def _as_shape(shape) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TaoUserError(f"tensorfile shape must be a sequence of integers, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise TaoUserError(f"tensorfile shape {dims} has a negative dimension")
    return dims


# ---- reading ------------------------------------------------------------------------------


class TensorFile:
    """A tensorfile opened for reading: `len`, `tf[i]`, iteration, `shape`.

    Opening checks the structure without reading any data (cheap for large files): the file
    exists and is HDF5, it has a `count`, every record group 0 .. count-1 is there, and when the
    file declares a `shape`, every array has it. Each problem is a TaoUserError naming the file.
    """

    def __init__(self, path: str | os.PathLike):
        h5py = _h5py()
        self.path = Path(path)
        if not self.path.exists():
            raise TaoUserError(f"tensorfile {self.path} not found")
        if not self.path.is_file():
            raise TaoUserError(f"tensorfile {self.path} is not a file")
        try:
            hdf5 = h5py.is_hdf5(str(self.path))
        except OSError as e:
            raise TaoUserError(f"tensorfile {self.path} cannot be read: {e}") from None
        if not hdf5:
            raise TaoUserError(
                f"{self.path} is not a tensorfile: not an HDF5 file (generate one with calibration_tensorfile, "
                "or calibrate from images instead)"
            )
        try:
            self._db = h5py.File(self.path, "r")
        except OSError as e:
            raise TaoUserError(f"tensorfile {self.path} cannot be opened: {e}") from None
        try:
            self._count, self._shape = self._check()
        except BaseException:
            self._db.close()
            raise

    def _check(self) -> tuple[int, tuple[int, ...] | None]:
        h5py = _h5py()
        attrs = self._db.attrs
        if "count" not in attrs:
            raise TaoUserError(f"{self.path} is an HDF5 file but not a TAO tensorfile (no 'count' attribute)")
        count = np.asarray(attrs["count"])
        if count.shape != () or count.dtype.kind not in "iu" or int(count) < 0:
            raise TaoUserError(f"tensorfile {self.path}: bad 'count' attribute {attrs['count']!r}")
        count = int(count)
        shape = None
        if "shape" in attrs:
            raw = np.asarray(attrs["shape"])
            if raw.ndim > 1 or (raw.size and raw.dtype.kind not in "iu"):
                raise TaoUserError(f"tensorfile {self.path}: bad 'shape' attribute {attrs['shape']!r}")
            shape = tuple(int(d) for d in raw.reshape(-1))
        for i in range(count):
            name = group_name(i)
            group = self._db.get(name)
            if not isinstance(group, h5py.Group):
                raise TaoUserError(
                    f"tensorfile {self.path}: record {i} ({name}) is missing although count is {count}; the file is "
                    "incomplete or damaged: generate it again"
                )
            if shape is not None:
                for key, ds in _datasets(group, ""):
                    if ds.shape != shape:
                        where = "" if key == ARRAY_KEY else f", array {key!r}"
                        raise TaoUserError(
                            f"tensorfile {self.path}: record {i}{where} has shape {ds.shape}, but the file says every "
                            f"array has shape {shape} (inconsistent shapes)"
                        )
        return count, shape

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The shape every array has (the file's `shape` attribute), or None when not declared."""
        return self._shape

    @property
    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def _group(self, index: int):
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"tensorfile indices are integers, not {type(index).__name__}")
        i = int(index) + (self._count if index < 0 else 0)
        if not 0 <= i < self._count:
            raise IndexError(f"tensorfile {self.path} has {self._count} records; index {index} is out of range")
        if self._db is None or not self._db:
            raise TaoUserError(f"tensorfile {self.path} is closed")
        return i, self._db[group_name(i)]

    def __getitem__(self, index: int) -> Record:
        """Record `index` (negative counts from the end): an array, or a dict of arrays."""
        i, group = self._group(index)
        try:
            data = _read_group(group)
        except OSError as e:  # a damaged dataset (truncated file, bad compression chunk)
            raise TaoUserError(f"tensorfile {self.path}: record {i} cannot be read: {e}") from None
        return data[ARRAY_KEY] if list(data) == [ARRAY_KEY] else data

    def record_shapes(self, index: int) -> tuple[int, ...] | dict:
        """The shapes of record `index`, shaped like the record, without reading its data."""
        _, group = self._group(index)
        tree = _shapes(group)
        return tree[ARRAY_KEY] if list(tree) == [ARRAY_KEY] else tree

    def record_dtypes(self, index: int) -> np.dtype | dict:
        """The dtypes of record `index`, shaped like the record, without reading its data."""
        _, group = self._group(index)
        tree = _dtypes(group)
        return tree[ARRAY_KEY] if list(tree) == [ARRAY_KEY] else tree

    def __iter__(self) -> Iterator[Record]:
        for i in range(self._count):
            yield self[i]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorFile({str(self.path)!r}, count={self._count}, shape={self._shape})"


def read_tensorfile(path: str | os.PathLike) -> Iterator[Record]:
    """The records of `path`, in order. The file is opened and checked now (errors raise here);
    it is closed when the iterator is exhausted or dropped."""
    tf = TensorFile(path)

    def records():
        try:
            yield from tf
        finally:
            tf.close()

    return records()


def _read_group(group) -> dict:
    h5py = _h5py()
    return {key: _read_group(v) if isinstance(v, h5py.Group) else v[()] for key, v in group.items()}


def _shapes(group) -> dict:
    h5py = _h5py()
    return {key: _shapes(v) if isinstance(v, h5py.Group) else tuple(v.shape) for key, v in group.items()}


def _dtypes(group) -> dict:
    h5py = _h5py()
    return {key: _dtypes(v) if isinstance(v, h5py.Group) else v.dtype for key, v in group.items()}


def _datasets(group, prefix: str):
    h5py = _h5py()
    for key, v in group.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(v, h5py.Group):
            yield from _datasets(v, path)
        else:
            yield path, v
