"""Atomic file writes: temporary file in the same folder, fsync, rename.

A kill at any moment leaves either the previous complete file or the new complete file at the
destination, never a truncated one. The rename is atomic because the temporary file lives on
the same filesystem as the destination.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces `path` atomically.

    If the block raises, the temporary file is removed and `path` is untouched.
    With overwrite=False an existing `path` raises FileExistsError before anything is written.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    dest = Path(path)
    if not overwrite and dest.exists():
        raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not overwrite and dest.exists():
            raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(dest.parent)


def fsync_dir(folder: Path) -> None:
    """Persist a rename into `folder` (not every filesystem allows opening a directory)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    with atomic_write(path, "wb", overwrite=overwrite) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    with atomic_write(path, "w", overwrite=overwrite) as f:
        f.write(text)
