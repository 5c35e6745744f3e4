"""Paths the user gives for an input file: one line naming the path and what is wrong with it."""

from __future__ import annotations

import os

from tao_core.errors import TaoUserError


def require_file(path: str | os.PathLike, field: str, what: str = "file") -> str:
    """`path` as a str when it is a readable regular file; else a TaoUserError saying which of
    missing / a directory / not readable it is, prefixed with the spec field or flag `field`."""
    path = str(path)
    prefix = f"{field}: " if field else ""
    if os.path.isdir(path):
        raise TaoUserError(f"{prefix}{path} is a directory, expected a {what}")
    if not os.path.exists(path):
        hint = f" (a broken link to {os.readlink(path)})" if os.path.islink(path) else ""
        raise TaoUserError(f"{prefix}{path} does not exist{hint}")
    if not os.path.isfile(path):
        raise TaoUserError(f"{prefix}{path} is not a regular file, expected a {what}")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise TaoUserError(f"{prefix}{path} cannot be read: permission denied") from None
    except OSError as err:
        raise TaoUserError(f"{prefix}{path} cannot be read: {err.strerror or err}") from None
    return path
