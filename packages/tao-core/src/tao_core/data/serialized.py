"""Per-image records packed into one byte buffer (`dataset_type: serialized`).

Why: a DataLoader forks its workers from the parent. A plain list of dicts of arrays is millions
of small Python objects, and merely *reading* one in a worker bumps its reference count, which
writes to the page holding it; copy-on-write then duplicates that page in every worker, so RAM
grows with `workers x index size`. Here the whole index is two numpy arrays (a uint8 byte
buffer and an int64 end-offset array): two Python objects whose data pages are only ever read,
so forked workers keep sharing them. Each `__getitem__` unpickles a fresh record dict that is
freed after use.
"""

from __future__ import annotations

import pickle
from typing import Any, Iterable, Iterator

import numpy as np


def _encode(record: Any) -> bytes:
    """Pickle a record; a dict's ndarray values travel as raw bytes.

    Pickling an ndarray costs ~150 bytes of reconstructor boilerplate; a (dtype, shape, bytes)
    triple costs ~20, which shrinks a typical detection record by a third.
    """
    if isinstance(record, dict):
        arrays = {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in record.items() if isinstance(v, np.ndarray)}
        if arrays:
            plain = {k: v for k, v in record.items() if k not in arrays}
            return pickle.dumps((plain, arrays, list(record)), protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps((record, None, None), protocol=pickle.HIGHEST_PROTOCOL)


def _decode(data: memoryview) -> Any:
    plain, arrays, order = pickle.loads(data)
    if arrays is None:
        return plain
    # frombuffer over a fresh bytes object: a writable copy is made so callers may edit in place.
    out = {**plain, **{k: np.frombuffer(b, dtype=dt).reshape(shape).copy() for k, (dt, shape, b) in arrays.items()}}
    return {k: out[k] for k in order}


class SerializedList:
    """Read-only list of picklable records stored as one numpy byte buffer plus end offsets."""

    def __init__(self, records: Iterable[Any]):
        chunks = [_encode(r) for r in records]
        # End offsets: record i spans [ends[i-1], ends[i]) (with ends[-1] read as 0 for i == 0).
        self._ends = np.cumsum(np.fromiter((len(c) for c in chunks), np.int64, len(chunks)))
        self._buf = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        del chunks  # the per-record bytes objects are the very thing we want gone

    @classmethod
    def from_buffers(cls, buf: np.ndarray, ends: np.ndarray) -> SerializedList:
        """Wrap existing buffers (e.g. views of shared memory made by a framework layer)."""
        obj = cls.__new__(cls)
        obj._buf = np.asarray(buf, dtype=np.uint8).reshape(-1)
        obj._ends = np.asarray(ends, dtype=np.int64).reshape(-1)
        if len(obj._ends) and obj._ends[-1] != obj._buf.size:
            raise ValueError(f"offsets end at {obj._ends[-1]} but the buffer holds {obj._buf.size} bytes")
        return obj

    @property
    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """(byte buffer, end offsets): hand these to shared memory to share across processes."""
        return self._buf, self._ends

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes + self._ends.nbytes)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, idx: int) -> Any:
        n = len(self._ends)
        if not isinstance(idx, (int, np.integer)):
            raise TypeError(f"SerializedList indices must be integers, not {type(idx).__name__}")
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {n} records")
        start = int(self._ends[idx - 1]) if idx > 0 else 0
        end = int(self._ends[idx])
        # memoryview: pickle reads straight from the shared buffer, no intermediate bytes copy.
        return _decode(memoryview(self._buf[start:end]))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]
