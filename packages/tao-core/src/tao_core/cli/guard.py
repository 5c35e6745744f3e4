"""How every command line of the project reports errors, and its exit status.

Exit status, the same for every command (`tao`, `dino`, `deformable_detr`, `tao-converter`, ...):

    0          success
    1          a user error, printed as one line "error: ..." (bad argument or spec, missing or
               unreadable file, wrong key, a results folder that cannot be written), and any
               failure of the task itself (a bug keeps its traceback)
    128 + N    stopped by signal N: 143 for SIGTERM, 130 for SIGINT / Ctrl+C

A `TaoUserError` is printed as its message alone. An OSError about a path the user gave
(permission denied, a directory where a file is expected, a file where a folder is expected)
is a user error too: one line naming the path. Anything else is a bug: the traceback is kept.
`--debug` on the command line or TAO_DEBUG=1 in the environment shows the full traceback for
user errors too.
"""

import argparse
import logging
import os
import sys
from typing import Callable

from tao_core.errors import TaoUserError
from tao_core.results.stop import TaskStopped

EXIT_OK = 0
EXIT_USER_ERROR = 1

# OSErrors that mean "this path, as given, cannot be used": the user's to fix, not a bug.
_PATH_ERRORS = {
    PermissionError: "permission denied",
    IsADirectoryError: "is a directory, expected a file",
    NotADirectoryError: "a path component is a file, expected a folder",
}


def path_error_message(err: OSError) -> str | None:
    """One line for an OSError about a user's path (None when it is not one of those)."""
    for kind, what in _PATH_ERRORS.items():
        if isinstance(err, kind) and err.filename:
            return f"{err.filename}: {what}"
    if getattr(err, "errno", None) in (30,) and err.filename:  # EROFS
        return f"{err.filename}: read-only file system"
    return None


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("TAO_DEBUG", "").lower() in ("1", "true", "yes")


def run_guarded(fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call fn(argv) and turn user errors into one clear message and exit code 1 (see the module docstring)."""
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)
    try:
        return int(fn(argv) or 0)
    except TaoUserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TaskStopped as stop:
        print(f"error: {stop.summary or stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("error: stopped by SIGINT", file=sys.stderr)
        return 130
    except OSError as err:
        message = path_error_message(err)
        if message is None or debug:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


class UserArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are TaoUserErrors (one line, exit 1) instead of usage + exit 2."""

    def error(self, message: str):
        raise TaoUserError(f"{self.prog}: {message} (see {self.prog} --help)")
