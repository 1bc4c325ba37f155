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

log = logging.getLogger("gate.worker")


class Worker:
    """Subclass and override `run()`; loop until `self.stopping.is_set()`."""

    join_timeout = 2.0

    def __init__(self, name: str):
        self.name = name
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
