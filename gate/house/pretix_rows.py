"""pretix's positions as the house's rows, checked by value; and what it sets aside.

A position pretix sends becomes a row of `pretix_positions` only when every value is
one a gate's ticket list can carry (gate/boxoffice/lists.py `check_row`): a ticket id
that is unique and made of id characters, texts without control characters and within
their length, validity inside the list's time range, a secret that is unique and is not
its own ticket id. Anything else is *set aside*: kept in `pretix_set_aside` with why
(bounded; shown in /api/house and by `gate house pretix status`), never stored where it
could make the next list fail to pack, and so never able to crash the link again at the
next start.
"""

from __future__ import annotations

import json
import re
import time
from typing import Optional

from gate.boxoffice.lists import MAX_EVENT, MAX_ID, TIME_MAX, TIME_MIN
from gate.boxoffice.pretix import ticket_seed
from gate.boxoffice.pretix_api import parse_time

MAX_TEXT = 200
MAX_SECRET = 1024
MAX_SET_ASIDE = 1000          # rows kept for the operator; beyond that only counted
ORDER_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
COLUMNS = ("id, secret, ticket_id, order_code, positionid, event, item, subevent, holder, seat, email, attention, "
           "blocked, order_status, valid_if_pending, valid_from, valid_until")
ROW_SQL = """(
    id INTEGER PRIMARY KEY, secret TEXT NOT NULL, ticket_id TEXT NOT NULL, order_code TEXT NOT NULL,
    positionid INTEGER, event TEXT NOT NULL, item INTEGER, subevent INTEGER, holder TEXT, seat TEXT,
    email TEXT, attention INTEGER, blocked INTEGER, order_status TEXT, valid_if_pending INTEGER,
    valid_from INTEGER, valid_until INTEGER)"""
SET_ASIDE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pretix_set_aside (
    n INTEGER PRIMARY KEY, position INTEGER, order_code TEXT, reason TEXT NOT NULL, excerpt TEXT, at INTEGER);
"""


def _text(v, limit=MAX_TEXT) -> str:
    """A display text: truncated, control and format characters (bidi overrides...) made spaces."""
    return CONTROL_RE.sub(" ", v[:limit]) if isinstance(v, str) else ""


def _int(v) -> Optional[int]:
    return v if type(v) is int and 0 <= v < 1 << 53 else None


def gate_event(slug: str, subevent: Optional[int], subevents: dict) -> str:
    """DESIGN.md's ticket event id: `<slug>` or `<slug>-<subevent id>` (or the configured mapping)."""
    if subevent:
        return subevents.get(str(subevent)) or f"{slug}-{subevent}"
    return slug


def _time(v) -> tuple[bool, Optional[int]]:
    try:
        t = parse_time(v)
    except ValueError:
        return False, None
    return t is None or TIME_MIN <= t < TIME_MAX, t


def position_row(p: dict, slug: str, list_id: int, subevents: dict):
    """(row, check-ins on our list) for one position, or (None, why) for one the gates cannot take."""
    pid, secret, order = _int(p.get("id")), p.get("secret"), p.get("order")
    if pid is None:
        return None, "no usable id"
    if not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET or CONTROL_RE.search(secret):
        return None, "no usable secret"
    if not isinstance(order, str) or not ORDER_RE.match(order):
        return None, "no usable order code"
    ok_from, vf = _time(p.get("valid_from"))
    ok_until, vu = _time(p.get("valid_until"))
    if not (ok_from and ok_until):
        return None, "validity not a time within 2000-2100"
    sub = _int(p.get("subevent"))
    event = gate_event(slug, sub, subevents)
    if not 0 < len(event) <= MAX_EVENT:
        return None, "event id too long"
    seed = ticket_seed(secret)
    positionid = _int(p.get("positionid"))
    if seed:
        tid = f"pretix-{seed}"
    elif positionid:
        tid = f"{order}-{positionid}"
    else:
        return None, "no positionid (an unsigned ticket is named by order and position)"
    if len(tid) > MAX_ID or CONTROL_RE.search(tid) or tid == secret:
        return None, "no usable ticket id"
    seat = p.get("seat")
    seat = _text(seat.get("name")) if isinstance(seat, dict) else ""
    row = (pid, secret, tid, order, positionid or 0, event, _int(p.get("item")), sub,
           _text(p.get("attendee_name")), seat, _text(p.get("attendee_email")), int(p.get("require_attention") is True),
           int(bool(p.get("blocked"))), _text(p.get("order__status"), 2), int(p.get("order__valid_if_pending") is True),
           vf, vu)
    checkins = []
    raw = p.get("checkins")
    for c in (raw if isinstance(raw, list) else ())[:1000]:
        if not isinstance(c, dict) or c.get("list") != list_id or _int(c.get("id")) is None:
            continue
        try:
            ts = parse_time(c.get("datetime"))
        except ValueError:
            continue
        if ts is not None and TIME_MIN <= ts < TIME_MAX and c.get("type") in ("entry", "exit"):
            checkins.append((c["id"], pid, ts, c["type"]))
    return row, checkins


def marker_text(ms: int) -> str:
    """A marker as pretix's filters read it (whole seconds, rounded down: the filters include the bound)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def modified_ms(o) -> Optional[int]:
    try:
        return parse_time(o.get("last_modified")) if isinstance(o, dict) else None
    except ValueError:
        return None


def excerpt(p) -> str:
    """A short, safe piece of what pretix sent, for the operator (never a whole secret)."""
    if isinstance(p, dict):
        p = {k: (v[:12] + "…" if k == "secret" and isinstance(v, str) and len(v) > 12 else v)
             for k, v in list(p.items())[:12]}
    try:
        text = json.dumps(p, default=str)[:300]
    except (TypeError, ValueError):
        text = type(p).__name__
    return CONTROL_RE.sub(" ", text)


class SetAside:
    """The positions of one sync that the house did not take, kept for the operator (bounded)."""

    def __init__(self, db):
        self.db = db
        db.executescript(SET_ASIDE_SCHEMA)
        self.count = 0
        self.reasons: dict[str, int] = {}

    def clear(self) -> None:
        self.db.execute("DELETE FROM pretix_set_aside")

    def add(self, p, reason: str) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        kept = self.db.execute("SELECT count(*) FROM pretix_set_aside").fetchone()[0]
        if kept < MAX_SET_ASIDE:
            pid = p.get("id") if isinstance(p, dict) and _int(p.get("id")) is not None else None
            order = p.get("order") if isinstance(p, dict) and isinstance(p.get("order"), str) else None
            self.db.execute("INSERT INTO pretix_set_aside (position, order_code, reason, excerpt, at) "
                            "VALUES (?,?,?,?,?)", (pid, (order or "")[:32], reason, excerpt(p),
                                                   int(time.time() * 1000)))


def set_aside_report(db, limit: int = 20) -> dict:
    """For /api/house and `pretix status`: how many positions are set aside, why, and the first few."""
    try:
        rows = db.execute("SELECT position, order_code, reason, excerpt, at FROM pretix_set_aside ORDER BY n "
                          "LIMIT ?", (limit,)).fetchall()
        by = dict(db.execute("SELECT reason, count(*) FROM pretix_set_aside GROUP BY reason").fetchall())
    except Exception:   # no such table yet
        return {"count": 0, "by_reason": {}, "rows": []}
    return {"count": sum(by.values()), "by_reason": by,
            "rows": [{"position": r[0], "order": r[1], "reason": r[2], "excerpt": r[3], "at": r[4]} for r in rows]}
