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


class SerializedList:
    """Read-only list of picklable records stored as one numpy byte buffer plus end offsets."""

    def __init__(self, records: Iterable[Any]):
        chunks = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
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
        return pickle.loads(memoryview(self._buf[start:end]))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]
