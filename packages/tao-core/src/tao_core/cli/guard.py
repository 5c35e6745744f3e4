"""How every command line of the project reports errors.

A `TaoUserError` (bad spec, missing file, wrong key) is printed as its message alone and the
process exits 1. Anything else is a bug: the traceback is kept. `--debug` on the command line
or TAO_DEBUG=1 in the environment shows the full traceback for user errors too.
"""

import argparse
import logging
import os
import sys
from typing import Callable

from tao_core.errors import TaoUserError


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("TAO_DEBUG", "").lower() in ("1", "true", "yes")


def run_guarded(fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call fn(argv) and turn user errors into one clear message and exit code 1."""
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
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class UserArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are TaoUserErrors (one line, exit 1) instead of usage + exit 2."""

    def error(self, message: str):
        raise TaoUserError(f"{self.prog}: {message} (see {self.prog} --help)")
