"""What a receiver accepts by value, not only by type (docs/contract.md, MQTT contract).

A field that passed the type check can still overflow SQLite (an int beyond
int64), poison arithmetic (a timestamp of 2**64-1), or be an MQTT wildcard
when it is used as a topic level (`+`, `#`, `/`, NUL). Every receiver checks
the same rules, from this one module.
"""

from __future__ import annotations

import re

from gate.core import ids
from gate.core.clock import now_ms

# Venue and gate ids, event (performance) ids and the reserved words among them: one rule, in
# gate/core/ids.py, shared with `gate config check` (so a config never names what receivers drop).
ID_RE = ids.ID_RE
EVENT_RE = ids.EVENT_RE
RESERVED_EVENTS = tuple(ids.RESERVED_EVENTS)   # the house's own levels (gate/<venue>/house/status)
is_id, is_event = ids.is_id, ids.is_event

# A scan event's idempotency key (the gates use uuid4 hex).
EVENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# Ticket references: a ticket id or a hash; printable, bounded, never a control character
# (C0, DEL, C1 such as the 8-bit CSI) nor a Unicode format/separator character (bidi
# overrides, line separators) that could spoof the dashboard, an export or a terminal.
TICKET_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]{0,256}")
TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# A gate device's instance id (gate/state/instance.py): a few hex digits, made per device.
INSTANCE_RE = re.compile(r"[0-9a-f]{8,32}")

MAX_SEQ = 2**53          # exact in JSON doubles (the dashboard), far inside SQLite's int64
MAX_ATTENTION = 16
MODES = ("live", "test", "info")

# How far a scan's time may be from the receiver's clock. Gates keep events a day for resends and
# drain their outbox after an outage, so the past is generous; the future allows a gate whose
# clock runs ahead, not a forged year-3000 timestamp.
TS_PAST_MS = 30 * 24 * 3600 * 1000
TS_FUTURE_MS = 24 * 3600 * 1000


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
