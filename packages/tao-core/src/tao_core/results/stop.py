"""SIGTERM / SIGINT during a task: the task stops, says so, and never reports success.

`task_run` installs `StopSignals` for the duration of a task (main thread only). A signal
raises `TaskStopped` where the task is, unless the task declared a cooperative stop
(`stop.cooperative = True`, what training does): then the first signal only records the
request, the task's loop polls `stop.requested` at its next safe point (end of a step), saves
what it can and raises `stop.exception()` itself. If that point is not reached within the grace
period (TAO_STOP_GRACE_S, default 20 s: Kubernetes sends SIGKILL 30 s after SIGTERM), or a second
signal comes, TaskStopped is raised where the task is.

Forked children (DataLoader workers) ignore both signals: the main process decides, and shuts
them down on its way out.

Exit status of a stopped command: 128 + signal number (143 for SIGTERM, 130 for SIGINT), the
shell's convention, so a scheduler sees "killed", not success.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GRACE_S = 20.0
_current: StopSignals | None = None


class TaskStopped(BaseException):
    """The task was stopped by a signal: not a success and not a bug.

    A BaseException (like KeyboardInterrupt) so that no `except Exception` in a task swallows it.
    """

    def __init__(self, signum: int, detail: str = ""):
        self.signum = int(signum)
        self.detail = detail
        self.summary: str | None = None  # the runner's full line (task, epoch, step, what was saved)
        super().__init__(f"stopped by {self.signal_name}" + (f" ({detail})" if detail else ""))

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def grace_seconds() -> float:
    raw = os.environ.get("TAO_STOP_GRACE_S", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_GRACE_S
    except ValueError:
        value = DEFAULT_GRACE_S
    return value if value > 0 else DEFAULT_GRACE_S


class StopSignals:
    """SIGTERM / SIGINT handlers of one task (see the module docstring)."""

    def __init__(self, grace_s: float | None = None):
        self.grace_s = grace_seconds() if grace_s is None else float(grace_s)
        self.cooperative = False
        self.signum: int | None = None
        self.notes: list[str] = []  # what the task saved on its way out (said in the stopped line)
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def exception(self, detail: str = "") -> TaskStopped:
        return TaskStopped(self.signum or signal.SIGTERM, detail)

    def raise_if_requested(self) -> None:
        if self.signum is not None:
            raise self.exception()

    def install(self) -> StopSignals:
        global _current
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        _current = self
        return self

    def uninstall(self) -> None:
        global _current
        if threading.current_thread() is threading.main_thread():
            signal.alarm(0)
            for sig, handler in self._previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        if _current is self:
            _current = None

    def _handle(self, signum: int, _frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked worker: the main process stops it
        first = self.signum is None
        if first:
            self.signum = signum
        if self.cooperative and first:
            log.warning("%s received: stopping at the end of the current step (at most %.0f s)",
                        signal.Signals(signum).name, self.grace_s)
            signal.signal(signal.SIGALRM, self._grace_over)
            signal.alarm(max(1, math.ceil(self.grace_s)))
            return
        raise self.exception()

    def _grace_over(self, _signum, _frame) -> None:
        if os.getpid() != self._pid:
            return
        raise self.exception(f"the {self.grace_s:.0f} s grace period ran out before the current step ended")


def current_stop() -> StopSignals | None:
    """The StopSignals of the task running in this process (None outside a task)."""
    return _current
