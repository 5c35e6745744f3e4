"""Task results: TAO-style status.json lines and the per-task log file."""

from tao_core.results.status import (
    STATUS_FILENAME,
    Status,
    StatusLogger,
    Verbosity,
    format_eta,
    setup_task_logging,
    task_dir,
    task_run,
)

__all__ = [
    "STATUS_FILENAME",
    "Status",
    "StatusLogger",
    "Verbosity",
    "format_eta",
    "setup_task_logging",
    "task_dir",
    "task_run",
]
