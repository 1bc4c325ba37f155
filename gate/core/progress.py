"""Progress for long tasks: a live line on a terminal, a line per 10% in logs."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int = 0, stream=None):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_decile = -1
        self._last_draw = 0.0

    def __call__(self, done: int, total: int = 0) -> None:
        total = total or self.total
        now = time.monotonic()
        pct = 100 * done / total if total else 0
        if self.tty:
            if now - self._last_draw >= 0.1 or done >= total:
                self._last_draw = now
                self.stream.write(f"\r{self.label}: {done:,}/{total:,} ({pct:.0f}%)")
                self.stream.flush()
        else:
            decile = int(pct // 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{self.label}: {done:,}/{total:,} ({pct:.0f}%)\n")
                self.stream.flush()

    def done(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.label}: {message} in {time.monotonic() - self.start:.1f} s\n")
        self.stream.flush()
