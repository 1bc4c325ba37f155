"""When the curtain rises for each performance: `[house] curtain`, or the pretix event's start.

`[house] curtain = {"2026-11-23-eve" = "19:30"}` takes a time of day or a full local date and
time ("2026-11-23T19:30"). A time of day falls on the performance's own date: the date an event
id starts with (the usual `YYYY-MM-DD-...` ids), else the day of its first admission, else today.
A performance the config does not name takes its start from pretix when the house syncs with it
(the sync keeps each gate event's start in `pretix_state`, key `starts`).

A past performance with no curtain of its own is taken to have had tonight's curtain time of
day: venues mostly keep one curtain time, and without one its arrivals cannot be set against
the curtain at all (gate/house/flow.py's profile forecast).
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import time
from typing import Optional

from gate.core.timeofday import parse_time_or_moment as parse_curtain

DATE_AT_START = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
STARTS_KEY = "starts"   # pretix_state: JSON {gate event id: unix ms}


def on_day(minutes: int, day_ms: int) -> int:
    """Unix ms of `minutes` after local midnight on the local day of `day_ms`."""
    d = time.localtime(day_ms / 1000)
    return int(time.mktime((d.tm_year, d.tm_mon, d.tm_mday, minutes // 60, minutes % 60, 0, 0, 0, -1)) * 1000)


def event_day(ev: str) -> Optional[int]:
    """Local noon of the date an event id starts with ("2026-11-23-eve"), or None."""
    m = DATE_AT_START.match(ev)
    if not m:
        return None
    try:
        d = datetime.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), 12)
    except ValueError:
        return None
    return int(time.mktime(d.timetuple()) * 1000)


class Curtains:
    """Each performance's curtain (unix ms) and where it came from: `config`, `pretix`, `usual` (tonight's
    time of day, for a past performance) or None. `configured` is `[house] curtain` as written."""

    def __init__(self, configured: dict[str, str]):
        self.configured = {ev: parse_curtain(text) for ev, text in configured.items()}
        self.pretix: dict[str, int] = {}

    def set_pretix(self, starts: dict[str, int]) -> None:
        self.pretix = dict(starts)

    def of(self, ev: str, first_ms: Optional[int], now: int) -> tuple[Optional[int], Optional[str]]:
        """(curtain ms, source) of `ev`; `first_ms` is its first admission, if any."""
        if ev in self.configured:
            minutes, at = self.configured[ev]
            if at is not None:
                return at, "config"
            day = event_day(ev) or first_ms or now
            return on_day(minutes, day), "config"   # type: ignore[arg-type]
        if ev in self.pretix:
            return self.pretix[ev], "pretix"
        return None, None

    def usual(self, ev: str, first_ms: int, tonight: Optional[int]) -> Optional[int]:
        """A past performance's curtain: its own, else tonight's time of day on its day."""
        at, _ = self.of(ev, first_ms, first_ms)
        if at is not None or tonight is None:
            return at
        t = time.localtime(tonight / 1000)
        return on_day(t.tm_hour * 60 + t.tm_min, event_day(ev) or first_ms)


def pretix_starts(event: dict, slug: str, subevents: list, mapping: dict) -> dict[str, int]:
    """{gate event id: start ms} from pretix's event object and (for a series) its subevents, as
    gate/house/pretix_sync.py names gate events (`<slug>` or `<slug>-<subevent id>`, or the mapping)."""
    from gate.boxoffice.pretix_api import parse_time

    def ms(value) -> Optional[int]:
        try:
            return parse_time(value) if isinstance(value, str) else None
        except ValueError:   # pretix's data is outside input too: a bad time is no curtain
            return None
    out = {}
    start = ms(event.get("date_from"))
    if start is not None:
        out[slug] = start
    for s in subevents[:2000]:
        sid, at = s.get("id"), ms(s.get("date_from"))
        if type(sid) is int and at is not None:
            out[mapping.get(str(sid)) or f"{slug}-{sid}"] = at
    return out


def read_pretix_starts(db_path) -> dict[str, int]:
    """What the last pretix sync stored ({} when the house does not sync, or has not yet)."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return {}
    try:
        row = db.execute("SELECT value FROM pretix_state WHERE key=?", (STARTS_KEY,)).fetchone()
        got = json.loads(row[0]) if row else {}
        return {str(k): int(v) for k, v in got.items() if type(v) is int} if isinstance(got, dict) else {}
    except (sqlite3.Error, ValueError):
        return {}
    finally:
        db.close()
