"""Supervised workers: a worker thread that outlives anything its work can raise.

A plain `Worker` (gate/core/worker.py) logs an exception escaping `run()` and ends. A house
runs a few long-lived loops (intake, publisher, the dashboard, the pretix sync and upload)
that must not end: each is written to handle what it expects, and the supervisor is the
last line for what nobody expected. When `run()` raises (or returns before it was asked to
stop), the error is logged once with its cause (the same error again is counted, not
logged), kept for `/api/house`, and `run()` starts again after a backoff that doubles from
1 s to a minute, so a loop that fails at once on every start costs a log line and a wake-up
a minute, not a busy spin. A run that lasted a minute before failing starts the backoff over.

    class Intake(Supervised): ...          # instead of Worker: nothing else changes
    workers = Workers(intake, publisher)   # for /api/house: [{"name", "state", "restarts", ...}]
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable, Iterator, Optional

from gate.core.worker import Worker

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 60.0   # a run this long without failing starts the backoff over


def describe(exc: BaseException) -> str:
    """`Type: message (at file:line in function)`: the cause in one line, for the API and the dashboard."""
    where = ""
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else None
    if tb:
        f = tb[-1]
        where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


class Supervised(Worker):
    """A Worker whose `run()` is started again, with backoff, whenever it raises or ends unasked.

    `alive` stays true while it waits to restart (the thread lives on), so a watchdog that pings
    on `alive` keeps pinging: the worker mends itself and says so in `status()`. `on_failure(text)`
    (optional) is told each failure, say to raise an alert."""

    min_backoff = MIN_BACKOFF_S
    max_backoff = MAX_BACKOFF_S

    def __init__(self, name: str, join_timeout: Optional[float] = None):
        super().__init__(name, join_timeout)
        self.on_failure: Optional[Callable[[str], None]] = None
        self.phase = "new"
        self.restarts = 0
        self.failures = 0
        self.repeats = 0              # the same error again, counted rather than logged
        self.last_error = ""
        self.last_error_at: Optional[int] = None
        self._restart_at: Optional[float] = None
        self._logged = ""

    def _main(self) -> None:
        backoff = self.min_backoff
        while not self.stopping.is_set():
            self.phase = "running"
            began = time.monotonic()
            try:
                self.run()
                if self.stopping.is_set():
                    break
                raise RuntimeError("the worker's loop ended by itself")
            except Exception as exc:
                if time.monotonic() - began >= HEALTHY_AFTER_S:
                    backoff = self.min_backoff
                self._failed(exc, backoff)
            self.phase = "restarting"
            self._restart_at = time.monotonic() + backoff
            if self.stopping.wait(backoff):
                break
            backoff = min(self.max_backoff, backoff * 2)
            self.restarts += 1
        self.phase = "stopped"

    def _failed(self, exc: Exception, backoff: float) -> None:
        self.failures += 1
        what = describe(exc)
        self.last_error, self.last_error_at = what, int(time.time() * 1000)
        if what != self._logged:
            self._logged, self.repeats = what, 0
            log.error("worker %s failed; restarting it in %.0f s (the same error again is counted, not logged)",
                      self.name, backoff, exc_info=exc)
        else:
            self.repeats += 1
            log.debug("worker %s failed again (%d times): %s", self.name, self.repeats + 1, what)
        if self.on_failure is not None:
            try:
                self.on_failure(what)
            except Exception:   # a reporting hook must not take the supervisor down with it
                log.debug("on_failure hook of %s failed", self.name, exc_info=True)

    def status(self) -> dict:
        """For /api/house: state, restarts, and the last failure with its cause."""
        out = {"name": self.name, "state": self.phase, "restarts": self.restarts, "failures": self.failures,
               "last_error": self.last_error, "last_error_at": self.last_error_at}
        if self.phase == "restarting" and self._restart_at is not None:
            out["restart_in_s"] = round(max(0.0, self._restart_at - time.monotonic()), 1)
        return out


class Workers:
    """The supervised workers of one process, for status reports."""

    def __init__(self, *workers: Supervised):
        self._items: list[Supervised] = []
        self._lock = threading.Lock()
        self.add(*workers)

    def add(self, *workers: Optional[Supervised]) -> None:
        with self._lock:
            self._items += [w for w in workers if w is not None]

    def __iter__(self) -> Iterator[Supervised]:
        with self._lock:
            return iter(list(self._items))

    def report(self) -> list[dict]:
        return [w.status() for w in self]
