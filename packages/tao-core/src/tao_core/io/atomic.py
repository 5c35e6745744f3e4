"""Atomic file writes: temporary file in the same folder, fsync, rename.

A kill at any moment leaves either the previous complete file or the new complete file at the
destination, never a truncated one. The rename is atomic because the temporary file lives on
the same filesystem as the destination.

Temporaries are named `.<name>.tao-<host>-<pid>-<random>.tmp`, so the ones a killed process
left behind (kill -9 during a 20 MB checkpoint write) are recognisable as ours and whose:
`remove_stale_temporaries` deletes those of processes of this host that no longer run, and
never touches another file (a live writer's temporary, another host's, or a user's `.tmp`).

Permissions: files are created with mode 0o666 filtered by the process umask, as `open()`
does (mkstemp's 0o600 made every output unreadable to a DeepStream service running as
another user). `private=True` creates 0o600 for a file that holds a secret.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
from pathlib import Path
from typing import IO, Iterator

_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
TMP_MARK = ".tao-"  # what every temporary of ours carries in its name
_TMP_RE = re.compile(r"^\..+\.tao-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]+\.tmp$")


def temporary_name(dest_name: str) -> str:
    """The name a temporary for `dest_name` gets (in the destination's folder)."""
    return f".{dest_name}{TMP_MARK}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def create_file(path: str | os.PathLike, private: bool = False) -> int:
    """Create `path` exclusively (O_EXCL) and return its descriptor; mode 0o666 & ~umask, or 0o600."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                   0o600 if private else 0o666)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", overwrite: bool = True,
                 private: bool = False) -> Iterator[IO]:
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
    while True:
        tmp = dest.parent / temporary_name(dest.name)
        try:
            fd = create_file(tmp, private)
            break
        except FileExistsError:  # 32 random bits collided: draw again
            continue
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True, private: bool = False) -> None:
    with atomic_write(path, "wb", overwrite=overwrite, private=private) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True, private: bool = False) -> None:
    with atomic_write(path, "w", overwrite=overwrite, private=private) as f:
        f.write(text)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temporary(name: str) -> bool:
    """True for a temporary of ours (see the module docstring) whose writer, on this host, is gone."""
    m = _TMP_RE.match(name)
    if not m or m["host"] != _HOST:
        return False
    pid = int(m["pid"])
    return pid != os.getpid() and not pid_alive(pid)


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True, max_depth: int = 3) -> list[str]:
    """Delete the stale temporaries of our atomic writes in `folder` (and its sub-folders up to
    `max_depth`); returns the paths removed. A missing or unreadable folder removes nothing."""
    removed: list[str] = []
    folder = str(folder)
    base_depth = folder.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(folder, onerror=lambda _e: None):
        if not recursive or root.count(os.sep) - base_depth >= max_depth:
            dirs[:] = []
        for name in files:
            if is_stale_temporary(name):
                path = os.path.join(root, name)
                try:
                    os.unlink(path)
                except OSError as err:
                    if err.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                        raise
                    continue
                removed.append(path)
    return removed
