"""Wall-clock time as every payload and record carries it: unix milliseconds."""

from __future__ import annotations

import os
import time

CLOCK_SANE_MS = 1_700_000_000_000   # Nov 2023: a clock before this was never set


def now_ms() -> int:
    """The wall clock in unix milliseconds."""
    return time.time_ns() // 1_000_000


def clock_synchronised() -> bool:
    """False when the clock was obviously never set, or systemd-timesyncd says it is not synced."""
    if now_ms() < CLOCK_SANE_MS:
        return False
    if os.path.isdir("/run/systemd/timesync"):
        return os.path.exists("/run/systemd/timesync/synchronized")
    return True
