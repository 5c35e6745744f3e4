"""Inputs a task skips instead of failing on: one unreadable image in an inference folder is
reported (count and names, in the log and in status.json) and the others are processed; the
task fails only when nothing could be processed. Shared by every inference task (checkpoint or
engine) so they all report the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from tao_core.data.images import load_image_checked
from tao_core.errors import TaoUserError

logger = logging.getLogger(__name__)

_SHOWN = 20  # names listed in the one-line summary; status.json lists them all


class SkippedInputs:
    """Collects the inputs a run skipped (`add`) and reports them (`report`)."""

    def __init__(self, what: str = "images"):
        self.what = what
        self.items: list[tuple[str, str]] = []  # (path, why)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, path: str, why: str) -> None:
        self.items.append((str(path), why))
        logger.warning("skipped: %s", why)

    def report(self, total: int, status: Any = None) -> dict:
        """Log and record what was skipped; a TaoUserError when every one of `total` was."""
        n = len(self.items)
        if n == 0:
            return {"count": 0, "files": []}
        names = [p for p, _ in self.items]
        shown = ", ".join(names[:_SHOWN]) + (f", ... ({n} in all)" if n > _SHOWN else "")
        if n >= total:
            first = self.items[0][1]
            raise TaoUserError(f"none of the {total} {self.what} could be read (e.g. {first}); skipped: {shown}")
        message = f"skipped {n} of {total} {self.what} that cannot be read: {shown}"
        logger.warning("%s", message)
        if status is not None:
            status.write("RUNNING", message, verbosity="WARNING", skipped={"count": n, "files": names})
        return {"count": n, "files": names}


def readable_images(paths, skipped: SkippedInputs):
    """(path, RGB uint8 image) of each file of `paths` that decodes; the others go to `skipped`
    (and decoding warnings, e.g. an EXIF rotation, to the log)."""
    for path in paths:
        try:
            image, warning = load_image_checked(path)
        except TaoUserError as err:
            skipped.add(path, str(err))
            continue
        if warning:
            logger.warning("%s", warning)
        yield path, image


def readable_batches(paths, batch_size: int, skipped: SkippedInputs):
    """readable_images in lists of up to `batch_size` (an engine's batch)."""
    batch = []
    for item in readable_images(paths, skipped):
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
