"""A verdict in words: for the usher's display, the terminal and the demo (written once)."""

from __future__ import annotations

import time

from gate.events import ScanEvent, Verdict

HEADLINE = {"admitted": "WELCOME", "exited": "GOODBYE", "rejected": "STOP", "annulled": "NOT PASSED"}


def display_lines(v: Verdict) -> tuple:
    """The lines a handheld's display shows: headline, holder, seat, then greeting or why not."""
    t = v.ticket
    lines = [f"{HEADLINE[v.result]} {v.reason}"]
    if t is not None:
        if t.holder:
            lines.append(t.holder)
        if t.seat:
            lines.append(f"Seat {t.seat}")
    if v.greeting and v.admitted:
        lines.append(v.greeting)
    if v.detail and not v.admitted:
        lines.append(v.detail)
    return tuple(lines)


def who(v: Verdict) -> str:
    """Holder and seat, for one line of text."""
    t = v.ticket
    if t is None:
        return ""
    return " ".join(x for x in (t.holder, f"seat {t.seat}" if t.seat else "") if x)


def remark(v: Verdict) -> str:
    """The greeting for an admission, the reason in words for anything else."""
    return v.greeting if v.admitted and v.greeting else (v.detail if not v.admitted else "")


def verdict_line(v: Verdict, e: ScanEvent) -> str:
    """One terminal line per verdict (`gate scan` without --json)."""
    parts = [time.strftime("%H:%M:%S", time.localtime(e.ts / 1000)), e.gate, v.result.upper(), v.reason,
             e.ticket or "-"]
    t = v.ticket
    if t is not None and t.holder:
        parts.append(t.holder)
    if t is not None and t.seat:
        parts.append(f"seat {t.seat}")
    if v.attention:
        parts.append("[" + ",".join(v.attention) + "]")
    if v.greeting and v.admitted:
        parts.append(f'"{v.greeting}"')
    if v.detail and not v.admitted:
        parts.append(f"({v.detail})")
    return "  ".join(parts)
