"""Where a process's start-up went, for the one log line that says it at READY.

A gate that takes long to come back after a restart keeps a door shut, so `gate scan` logs, once its
first frame is decided, how long that took from the process's start and in which phase:

    ready: first frame decided 1.9 s after start (interpreter 0.3 s, imports 0.9 s, config and build 0.4 s,
    first frame 0.3 s)

The process's start is the kernel's (/proc/self/stat), so the interpreter's own start is in the figure.
Phases are marked in order with `mark(name)`; `summary(last)` names each phase by the mark that ends it.
"""

from __future__ import annotations

import os
import time

_marks: list[tuple[str, float]] = []


def _process_start() -> float | None:
    """This process's start on the CLOCK_BOOTTIME scale (seconds), from /proc; None off Linux."""
    if not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()   # after "pid (comm) ": state is field 3
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")   # field 22, starttime, in clock ticks since boot
    except (OSError, ValueError, IndexError):
        return None


def _now() -> float:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)   # Linux; elsewhere the phases still add up
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


def mark(name: str) -> None:
    """The phase called `name` ends now."""
    _marks.append((name, _now()))


def summary(last: str) -> str | None:
    """'<total> s after start (<phase> <s> s, ...)' with `last` marked now, or None when this process marked
    no phase before (a gate built by a test or the demo, not started by `gate scan`)."""
    if not _marks:
        return None
    mark(last)
    start = _process_start()
    t0 = start if start is not None else _marks[0][1]
    parts, prev = [], t0
    for name, t in _marks:
        parts.append(f"{name} {max(0.0, t - prev):.1f} s")
        prev = t
    del _marks[:]
    return f"{prev - t0:.1f} s after start ({', '.join(parts)})"
