"""One thread pattern for every worker: a stop event and a bounded join that complains.

Like gpiozero's GPIOThread: `stop()` never hangs and never passes silently. A
worker that does not end within its join timeout is logged (it is a daemon
thread, so it cannot keep the process alive), and an exception escaping
`run()` is logged instead of vanishing with the thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

log = logging.getLogger(__name__)


class Worker:
    """Subclass and override `run()`; loop until `self.stopping.is_set()`."""

    join_timeout = 2.0

    def __init__(self, name: str, join_timeout: Optional[float] = None):
        self.name = name
        if join_timeout is not None:   # a worker that may be inside a slow call (a network timeout) waits longer
            self.join_timeout = join_timeout
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _main(self) -> None:
        try:
            self.run()
        except Exception:
            log.exception("worker %s failed", self.name)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Ask the worker to end and wait a bounded time; True if it ended."""
        self.stopping.set()
        self.wake()
        th = self._thread
        if th is None or th is threading.current_thread():
            return True
        th.join(self.join_timeout if timeout is None else timeout)
        if th.is_alive():
            log.warning("worker %s did not stop within %.1f s; leaving it behind", self.name,
                        self.join_timeout if timeout is None else timeout)
            return False
        return True

    def wake(self) -> None:
        """Override to nudge a worker blocked on something other than `stopping`."""


class LatestOnly(Worker):
    """A worker that handles only the newest item offered: an older one still waiting is replaced.

    For work where only the latest matters (the display's content, a ticket
    list): a slow consumer never builds a queue.
    """

    def __init__(self, name: str):
        super().__init__(name)
        self._slot = None
        self._busy = False
        self._cv = threading.Condition()

    def offer(self, item) -> None:
        with self._cv:
            self._slot = item
            self._cv.notify_all()

    def handle(self, item) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._slot is not None or self.stopping.is_set())
                if self.stopping.is_set():
                    return
                item, self._slot, self._busy = self._slot, None, True
            try:
                self.handle(item)
            except Exception:
                log.exception("worker %s failed on an item", self.name)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def wait_idle(self, timeout: float = 1.0) -> bool:
        """Wait until nothing is waiting or being handled; True if so within `timeout`."""
        with self._cv:
            return self._cv.wait_for(lambda: self._slot is None and not self._busy, timeout)
