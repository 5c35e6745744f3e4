"""TAO-style `status.json`: one JSON object per line, appended as a task runs.

Each task writes `<results_dir>/<task>/status.json` (TAO's per-task results folder). A line is::

    {"date": "7/4/2025", "time": "9:5:3", "status": "RUNNING", "verbosity": "INFO",
     "message": "Training loop in progress", "epoch": 3, "max_epoch": 50, "eta": "1:02:10",
     "kpi": {"train_loss": 4.21}}

Key order and meaning follow TAO's StatusLogger:

- `date`: "m/d/yyyy" without zero padding; `time`: "h:m:s" without zero padding (TAO writes
  `f"{hour}:{minute}:{second}"`, so 9:05:03 appears as "9:5:3").
- `status`: one of SUCCESS, FAILURE, STARTED, RUNNING, SKIPPED (`Status`).
- `verbosity`: DISABLE, DEBUG, INFO, WARNING, ERROR or CRITICAL (`Verbosity`).
- `message` when given; then the training progress keys `epoch`, `max_epoch`, `eta` when given.
  `eta` is written as TAO writes it, a timedelta string ("0:12:05"); a number is taken as
  seconds and converted, a string is written unchanged.
- `categorical`, `graphical`, `kpi` dicts when given (`kpi` values are floats; NaN and
  infinities become the strings "nan", "inf", "-inf" so every line stays strict JSON);
- any extra keyword fields last.

Each line is built in memory and written with one `write` on an O_APPEND descriptor, then
fsynced: a kill leaves at most an incomplete last line, never a corrupted earlier one, and
concurrent readers (a monitoring UI tailing the file) only ever see whole lines before it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterator

from tao_core.errors import TaoUserError
from tao_core.results.stop import StopSignals, TaskStopped

STATUS_FILENAME = "status.json"
_LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"  # TAO's console layout


class Status(StrEnum):
    """Task state; declared in TAO's enum order (SUCCESS=0 ... SKIPPED=4)."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    STARTED = "STARTED"
    RUNNING = "RUNNING"
    SKIPPED = "SKIPPED"


class Verbosity(StrEnum):
    DISABLE = "DISABLE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def task_dir(results_dir: str | os.PathLike, task: str) -> Path:
    """The folder a task writes into: `<results_dir>/<task>`."""
    return Path(results_dir) / task


def format_eta(eta: str | float | int | timedelta | None) -> str | None:
    """ETA as TAO writes it: `str(timedelta)`, e.g. "0:12:05"; numbers are seconds."""
    if eta is None or isinstance(eta, str):
        return eta
    if isinstance(eta, timedelta):
        return str(eta)
    return str(timedelta(seconds=round(float(eta))))


def _finite_or_str(value: Any) -> float | str:
    number = float(value)
    # json.dumps would write NaN/Infinity, which strict JSON readers reject.
    return number if math.isfinite(number) else str(number)


def _json_default(obj: Any) -> Any:
    # numpy scalars and similar expose .item(); anything else (Path, ...) is written as text.
    item = getattr(obj, "item", None)
    if callable(item):
        with contextlib.suppress(Exception):
            return item()
    return str(obj)


def one_line(text: str) -> str:
    """Collapse a multi-line message (e.g. several spec errors) to one line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def is_rank_zero() -> bool:
    """False in every process but the first of a distributed run (torchrun, Lightning, mpirun).

    Lightning's own launcher sets only LOCAL_RANK / NODE_RANK in the processes it starts.
    """
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "0").strip() not in ("", "0"):
            return False
    return True


class StatusLogger:
    """Appends TAO-style status lines to `<results_dir>/<task>/status.json`.

    `enabled=None` writes only on rank 0 (from RANK / OMPI_COMM_WORLD_RANK); a disabled
    logger still returns the record it would have written. `now` is injectable for tests.
    """

    def __init__(
        self,
        results_dir: str | os.PathLike,
        task: str,
        *,
        filename: str = STATUS_FILENAME,
        enabled: bool | None = None,
        now: Callable[[], datetime] = datetime.now,
    ):
        self.task = task
        self.path = task_dir(results_dir, task) / filename
        self.enabled = is_rank_zero() if enabled is None else enabled
        self._now = now
        # Where a long task is (e.g. {"epoch": 2, "step": 140}), kept up to date by its loop so
        # that a stopped or failed line can say it.
        self.progress: dict[str, Any] = {}
        # Fields of the closing SUCCESS line a task may set (message, verbosity, kpi): e.g. an
        # engine that built but does not follow its FP32 model says so there, not a plain success.
        self.final: dict[str, Any] = {}

    def record(
        self,
        status: Status | str = Status.RUNNING,
        message: str | None = None,
        *,
        verbosity: Verbosity | str = Verbosity.INFO,
        epoch: int | None = None,
        max_epoch: int | None = None,
        eta: str | float | timedelta | None = None,
        kpi: dict[str, float] | None = None,
        categorical: dict | None = None,
        graphical: dict | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Build one status record (not written). Unknown status/verbosity names raise ValueError."""
        stamp = self._now()
        rec: dict[str, Any] = {
            "date": f"{stamp.month}/{stamp.day}/{stamp.year}",
            "time": f"{stamp.hour}:{stamp.minute}:{stamp.second}",
            "status": Status(status).value,
            "verbosity": Verbosity(verbosity).value,
        }
        if message is not None:
            rec["message"] = str(message)
        for key, value in (("epoch", epoch), ("max_epoch", max_epoch), ("eta", format_eta(eta))):
            if value is not None:
                rec[key] = value
        for key, value in (("categorical", categorical), ("graphical", graphical)):
            if value:
                rec[key] = dict(value)
        if kpi:
            rec["kpi"] = {str(k): _finite_or_str(v) for k, v in kpi.items()}
        clash = sorted(set(extra) & set(rec))
        if clash:  # an extra field must not silently replace date/status/kpi...
            raise ValueError(f"status fields given twice: {clash}")
        rec.update(extra)
        return rec

    def write(self, status: Status | str = Status.RUNNING, message: str | None = None, **fields: Any) -> dict:
        """Append one line (see `record` for the fields) and fsync it; returns the record."""
        rec = self.record(status, message, **fields)
        if self.enabled:
            line = json.dumps(rec, default=_json_default, allow_nan=False) + "\n"
            self._append(line.encode("utf-8"))
        return rec

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one call; loop only for a short write
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        """All complete lines written so far (a torn last line from a kill is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records


def setup_task_logging(results_dir: str | os.PathLike, task: str, verbose: bool = False) -> logging.Logger:
    """Log to the console and to `<results_dir>/<task>/<task>.log`; returns logger `tao.<task>`.

    Handlers go on the root logger so every module's `logging.getLogger(__name__)` reaches the
    file. Calling it again replaces the handlers it added before (no duplicated lines), so
    it is safe to call from every entry point.
    """
    log_path = task_dir(results_dir, task) / f"{task}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_tao_task_handler", False)]:
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_LOG_FORMAT)
    # Only the first process of a distributed run writes the log file (the others' lines would
    # interleave); every process still logs to its console.
    handlers = [logging.StreamHandler(sys.stderr)]
    if is_rank_zero():
        handlers.insert(0, logging.FileHandler(log_path, encoding="utf-8"))
    for handler in handlers:
        handler._tao_task_handler = True  # marks ours, so a re-run removes exactly these
        handler.setFormatter(formatter)
        handler.setLevel(level)
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))  # never silence what was already enabled
    return logging.getLogger(f"tao.{task}")


class _RedactSecrets(logging.Filter):
    """Replaces the given secrets (the -k key) in every record a task handler writes."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        from tao_core.crypto import redact_text

        message = record.getMessage()
        clean = redact_text(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_task_logs(secrets: list[str]) -> None:
    """Never let the key reach the console or the task log: filter the task handlers' records."""
    wanted = [s for s in secrets if s]
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_tao_task_handler", False):
            for old in [f for f in handler.filters if isinstance(f, _RedactSecrets)]:
                handler.removeFilter(old)
            if wanted:
                handler.addFilter(_RedactSecrets(wanted))


@contextlib.contextmanager
def task_run(
    results_dir: str | os.PathLike, task: str, network: str | None = None, **logger_kwargs: Any
) -> Iterator[StatusLogger]:
    """Bracket a task with STARTED and SUCCESS/FAILURE status lines.

    A `TaoUserError` is recorded with its own message (one line), any other exception as
    "<ExceptionType>: message"; both are re-raised. `SystemExit(0)` counts as success, except
    when a stop signal came (a framework's own graceful exit on SIGTERM is not a success).
    SIGTERM / SIGINT (see tao_core.results.stop) end in a FAILURE line "<title> stopped by
    SIGTERM at epoch E, step S" and `TaskStopped` is re-raised (exit status 128 + signal).
    """
    status = StatusLogger(results_dir, task, **logger_kwargs)
    title = f"{network} {task}" if network else task
    log = logging.getLogger(f"tao.{task}")
    done = f"{title} finished successfully."
    stop = StopSignals().install()
    status.write(Status.STARTED, f"Starting {title}.")

    def stopped(exc: BaseException | None) -> TaskStopped:
        stop_exc = exc if isinstance(exc, TaskStopped) else stop.exception()
        where = ", ".join(f"{k} {v}" for k, v in status.progress.items())
        message = f"{title} {stop_exc}" + (f" at {where}" if where else "")
        if exc is not None and not isinstance(exc, (TaskStopped, SystemExit)):
            message += f"; on the way out: {type(exc).__name__}: {exc}"
        message = one_line("; ".join([message, *stop.notes]))
        status.write(Status.FAILURE, message, verbosity=Verbosity.WARNING, stopped_by=stop_exc.signal_name,
                     **{k: v for k, v in status.progress.items() if k in ("epoch", "step")})
        log.warning("%s", message)
        stop_exc.summary = message
        return stop_exc

    try:
        yield status
    except TaskStopped as exc:
        raise stopped(exc) from None
    except TaoUserError as exc:
        if stop.requested:
            raise stopped(exc) from None
        status.write(Status.FAILURE, one_line(str(exc)), verbosity=Verbosity.ERROR)
        log.error("%s failed: %s", title, exc)
        raise
    except SystemExit as exc:
        if stop.requested:
            raise stopped(exc) from None
        if exc.code not in (0, None):
            status.write(Status.FAILURE, f"SystemExit: exit code {exc.code}", verbosity=Verbosity.ERROR)
            raise
        status.write(Status.SUCCESS, done)
        raise
    except BaseException as exc:
        if stop.requested:
            raise stopped(exc) from None
        status.write(Status.FAILURE, one_line(f"{type(exc).__name__}: {exc}"), verbosity=Verbosity.ERROR)
        raise
    else:
        if stop.requested:  # the task returned although a signal came: still not a success
            raise stopped(None)
        status.write(Status.SUCCESS, **({"message": done} | status.final))
    finally:
        stop.uninstall()
