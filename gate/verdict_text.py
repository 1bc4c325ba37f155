"""A verdict in words: for the usher's display, the terminal and the demo (written once).

Each takes the verdict and, beside it, the ticket's `Welcome` (its greeting and attention tags)."""

from __future__ import annotations

import re
import time

from gate.core.events import ScanEvent, Verdict, Welcome

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


def printable(text: str) -> str:
    """Patron text made safe for a terminal: escape sequences removed, other control and
    format characters (C0, C1, bidi overrides) shown as '?'. A holder name from a ticket list
    must not be able to recolour, retitle or rewrite an operator's terminal."""
    if text.isprintable():
        return text
    text = _ANSI.sub("", text)
    return "".join(ch if ch.isprintable() or ch == " " else "?" for ch in text)


HEADLINE = {"admitted": "WELCOME", "exited": "GOODBYE", "rejected": "STOP", "annulled": "NOT PASSED"}


def display_lines(v: Verdict, w: Welcome) -> tuple:
    """The lines a handheld's display shows: headline, holder, seat, then greeting or why not."""
    t = v.ticket
    lines = [f"{HEADLINE[v.result]} {v.reason}"]
    if t is not None:
        if t.holder:
            lines.append(t.holder)
        if t.seat:
            lines.append(f"Seat {t.seat}")
    if w.greeting and v.admitted:
        lines.append(w.greeting)
    if v.detail and not v.admitted:
        lines.append(v.detail)
    return tuple(lines)


def who(v: Verdict) -> str:
    """Holder and seat, for one line of text."""
    t = v.ticket
    if t is None:
        return ""
    return " ".join(x for x in (t.holder, f"seat {t.seat}" if t.seat else "") if x)


def remark(v: Verdict, w: Welcome) -> str:
    """The greeting for an admission, the reason in words for anything else."""
    return w.greeting if v.admitted and w.greeting else (v.detail if not v.admitted else "")


def verdict_line(v: Verdict, w: Welcome, e: ScanEvent) -> str:
    """One terminal line per verdict (`gate scan` without --json)."""
    parts = [time.strftime("%H:%M:%S", time.localtime(e.ts / 1000)), e.gate, v.result.upper(), v.reason,
             e.ticket or "-"]
    t = v.ticket
    if t is not None and t.holder:
        parts.append(t.holder)
    if t is not None and t.seat:
        parts.append(f"seat {t.seat}")
    if w.attention:
        parts.append("[" + ",".join(w.attention) + "]")
    if w.greeting and v.admitted:
        parts.append(f'"{w.greeting}"')
    if v.detail and not v.admitted:
        parts.append(f"({v.detail})")
    return printable("  ".join(parts))
