"""Supervised workers: a thread that outlives anything its work can raise.

A house runs a few long-lived loops (ingest, the pretix sync, the pretix upload,
the web server). Each is written to handle what it expects; a supervisor is the
last line for what nobody expected. It runs the loop; when the loop raises, it
logs the error once with its cause (a repeat of the same error is counted, not
logged again), keeps it for `/api/house`, and starts the loop again after a
backoff that doubles from 1 s to a minute, so a loop that fails at once on every
start costs a log line and a wake-up a minute, not a busy spin. A loop that ran
for a while before failing starts again at the shortest backoff.

    sup = Supervised("pretix-sync", link.run_sync, stop_event, registry=workers)
    sup.start()
    workers.report()   # [{"name", "state", "restarts", "last_error", "last_error_at", ...}]
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable, Optional

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 60.0   # a run this long without failing resets the backoff


def describe(exc: BaseException) -> str:
    """`Type: message (at file:line in function)`: the cause in one line, for the API and the dashboard."""
    where = ""
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else None
    if tb:
        f = tb[-1]
        where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


class Workers:
    """The supervised workers of one process, for status reports."""

    def __init__(self):
        self._items: list["Supervised"] = []
        self._lock = threading.Lock()

    def add(self, sup: "Supervised") -> None:
        with self._lock:
            self._items.append(sup)

    def report(self) -> list[dict]:
        with self._lock:
            return [s.status() for s in self._items]

    def failing(self) -> list[dict]:
        """Workers that are waiting to restart after a failure."""
        return [s for s in self.report() if s["state"] == "restarting"]


class Supervised:
    """Runs `target()` on a daemon thread until `stop` is set, restarting it with backoff when it raises.

    `target` loops until `stop.is_set()` and returns; returning earlier counts as a failure too
    (a worker that quietly ends is as dead as one that raised). Thread-like enough for callers
    that used a plain Thread: `start()`, `is_alive()`, `join()`, `ident`."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event, *,
                 registry: Optional[Workers] = None, on_failure: Optional[Callable[[str], None]] = None,
                 min_backoff: float = MIN_BACKOFF_S, max_backoff: float = MAX_BACKOFF_S):
        self.name, self.target, self.stop = name, target, stop
        self.on_failure = on_failure
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.state = "new"
        self.restarts = 0
        self.failures = 0
        self.repeats = 0              # the same error again, counted rather than logged
        self.last_error = ""
        self.last_error_at: Optional[int] = None
        self.restart_at: Optional[float] = None
        self._logged = ""
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        if registry is not None:
            registry.add(self)

    # -- thread-like --------------------------------------------------------------
    def start(self) -> "Supervised":
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def ident(self):
        return self._thread.ident

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------------
    def _main(self) -> None:
        backoff = self.min_backoff
        while not self.stop.is_set():
            self.state = "running"
            began = time.monotonic()
            try:
                self.target()
                if self.stop.is_set():
                    break
                raise RuntimeError("the worker's loop ended by itself")
            except Exception as exc:
                if time.monotonic() - began >= HEALTHY_AFTER_S:
                    backoff = self.min_backoff
                self._failed(exc, backoff)
            self.state = "restarting"
            self.restart_at = time.monotonic() + backoff
            if self.stop.wait(backoff):
                break
            backoff = min(self.max_backoff, backoff * 2)
            self.restarts += 1
        self.state = "stopped"

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
        out = {"name": self.name, "state": self.state, "restarts": self.restarts, "failures": self.failures,
               "last_error": self.last_error, "last_error_at": self.last_error_at}
        if self.state == "restarting" and self.restart_at is not None:
            out["restart_in_s"] = round(max(0.0, self.restart_at - time.monotonic()), 1)
        return out
