"""What a receiver accepts by value, not only by type (DESIGN.md, MQTT contract).

A field that passed the type check can still overflow SQLite (an int beyond
int64), poison arithmetic (a timestamp of 2**64-1), or be an MQTT wildcard
when it is used as a topic level (`+`, `#`, `/`, NUL). Every receiver checks
the same rules, from this one module.
"""

from __future__ import annotations

import re

from gate.core.clock import now_ms

# Gate and venue ids: DESIGN.md's [A-Za-z0-9_-].
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Performance (event) ids: also pretix's slugs and `<slug>-<subevent>`, which may hold dots. They
# become MQTT topic levels and Home Assistant object ids, so nothing else is allowed: no `+`, `#`,
# `/`, spaces or control characters. Empty = unknown (a rejected code). The same rule as
# `gate config check` applies to gate.events and house.capacity (gate/config/checks.py).
EVENT_RE = re.compile(r"[A-Za-z0-9_.:-]{0,128}")
# A scan event's idempotency key (the gates use uuid4 hex).
EVENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# Ticket references: a ticket id or a hash; printable, bounded, never a control character
# (C0, DEL, C1 such as the 8-bit CSI) nor a Unicode format/separator character (bidi
# overrides, line separators) that could spoof the dashboard, an export or a terminal.
TICKET_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]{0,256}")
TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# Event ids that are the house's own topic levels (gate/<venue>/house/status, .../alerts): never a performance.
RESERVED_EVENTS = ("status", "alerts")

MAX_SEQ = 2**53          # exact in JSON doubles (the dashboard), far inside SQLite's int64
MAX_ATTENTION = 16
MODES = ("live", "test", "info")

# How far a scan's time may be from the receiver's clock. Gates keep events a day for resends and
# drain their outbox after an outage, so the past is generous; the future allows a gate whose
# clock runs ahead, not a forged year-3000 timestamp.
TS_PAST_MS = 30 * 24 * 3600 * 1000
TS_FUTURE_MS = 24 * 3600 * 1000


def is_id(text) -> bool:
    return type(text) is str and ID_RE.fullmatch(text) is not None


def is_event(text) -> bool:
    return type(text) is str and EVENT_RE.fullmatch(text) is not None and text not in RESERVED_EVENTS


def is_topic_level(text) -> bool:
    """Usable as one MQTT topic level: non-empty, no wildcard, separator, NUL or control character."""
    return type(text) is str and 0 < len(text) <= 128 and EVENT_RE.fullmatch(text) is not None


def seq_ok(seq) -> bool:
    return type(seq) is int and 0 < seq <= MAX_SEQ


def ts_ok(ts, now: int | None = None) -> bool:
    """A unix-ms timestamp within the window around the receiver's clock."""
    if type(ts) is not int:
        return False
    now = now_ms() if now is None else now
    return now - TS_PAST_MS <= ts <= now + TS_FUTURE_MS
