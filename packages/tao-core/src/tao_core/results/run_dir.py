"""The results folder of a task run: checked before anything is written, cleaned of what a killed
run left, and the record of the spec (experiment.yaml) written only once the run starts.

- `prepare_task_dir`: `<results_dir>/<task>/` is created, or a one-line TaoUserError says why it
  cannot be used (results_dir is a file, permission denied, read-only), before the first write.
  Stale temporaries of our atomic writes (kill -9 during a checkpoint write) are removed.
- `ExperimentRecord`: experiment.yaml describes the run that made the folder's outputs
  (checkpoints), so a rerun that fails its checks (a spec whose model no longer fits the
  checkpoints) must not replace it. The runner writes it when the task says it has started
  (`ctx.experiment.write()`, training: just before the first step) or when the task succeeds;
  the encryption key is redacted.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any, Callable

from tao_core.errors import TaoUserError
from tao_core.io.atomic import create_file, remove_stale_temporaries, temporary_name

log = logging.getLogger(__name__)


def _unusable(path: str, err: OSError) -> TaoUserError:
    reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "read-only file system", errno.ENOTDIR: "a path component is a file, not a folder",
              errno.ENOSPC: "no space left on the device"}.get(err.errno, err.strerror or str(err))
    return TaoUserError(f"results_dir: cannot write into {path}: {reason}")


def prepare_task_dir(results_dir: str | os.PathLike, task: str) -> str:
    """Create `<results_dir>/<task>` and prove it writable; returns its path (see the module docstring)."""
    root = str(results_dir)
    if os.path.exists(root) and not os.path.isdir(root):
        raise TaoUserError(f"results_dir: {root} is a file, expected a folder (pass -r with a folder path)")
    path = os.path.join(root, task)
    if os.path.exists(path) and not os.path.isdir(path):
        raise TaoUserError(f"results_dir: {path} is a file, expected the folder of the {task} results")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, temporary_name("write-check"))
        os.close(create_file(probe))
        os.unlink(probe)
    except OSError as err:
        raise _unusable(path, err) from None
    removed = remove_stale_temporaries(path)
    if removed:
        log.info("removed %d temporary files left by an interrupted run: %s", len(removed), ", ".join(removed[:5]))
    return path


class ExperimentRecord:
    """Writes `<results_dir>/<task>/experiment.yaml` once, when the run starts (see the module docstring).

    save: the function writing the spec, e.g. `lambda: save_experiment(redacted_cfg, results_dir, task)`.
    """

    def __init__(self, save: Callable[[], Any]):
        self._save = save
        self.written = False

    def write(self) -> None:
        if not self.written:
            self._save()
            self.written = True


def record_experiment(ctx: Any) -> None:
    """`ctx.experiment.write()` when the task context carries one (contexts built by hand may not)."""
    record = getattr(ctx, "experiment", None)
    if record is not None:
        record.write()
