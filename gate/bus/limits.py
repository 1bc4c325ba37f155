"""Bounds on the work a remote party can make us do: rates, drop counts, log lines.

Everything a peer on the bus can send is capped here or next to where it
arrives; what is refused is counted (shown in a gate's health and in the
house's /api/house) and logged at a bounded rate, so a flood cannot also
flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class TokenBucket:
    """`rate` units a second on average, bursts up to `burst`; never blocks."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.t = float(burst), clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Drops:
    """Counts of dropped messages by kind, written from any thread, read as a plain dict.

    The first drop of each kind is logged at WARNING; after that at most one
    summary line per `every` seconds."""

    def __init__(self, log: logging.Logger, what: str = "message", every: float = 60.0):
        self.log, self.what, self.every = log, what, every
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_log = 0.0
        self._since_log = 0

    def add(self, kind: str, where: str = "", detail="") -> None:
        with self._lock:
            n = self.counts.get(kind, 0) + 1
            self.counts[kind] = n
            self._since_log += 1
            now = time.monotonic()
            first = n == 1
            summary = not first and now - self._last_log >= self.every
            if first or summary:
                self._last_log, since, self._since_log = now, self._since_log, 0
        if first:   # repr(): a topic or payload from outside must not forge log lines
            self.log.warning("dropping %s on %r: %s %r (further ones of this kind are counted)",
                             self.what, str(where)[:120], kind, str(detail)[:80])
        elif summary:
            self.log.warning("dropped %d more %s(s) in the last %.0f s; totals %s", since, self.what,
                             self.every, self.snapshot())

    def guarded(self, log: logging.Logger, fn: Callable[..., object], *args) -> None:
        """`fn(*args)` as one step of a worker that must outlive anything a message can make it do: an
        exception is counted as `internal_error` (named by the function) and logged on `log` at DEBUG."""
        try:
            fn(*args)
        except Exception as exc:
            self.add("internal_error", fn.__name__, repr(exc))
            log.debug("%s failed", fn.__name__, exc_info=True)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def get(self, kind: str, default: int = 0) -> int:
        return self.counts.get(kind, default)

    def total(self) -> int:
        return sum(self.snapshot().values())
