"""Times of day as the venue's rules name them ("19:00"), in the gate's or house's local time."""

from __future__ import annotations

import datetime
import time
from typing import Optional

DAY_MIN = 24 * 60


def parse_time_of_day(text: str) -> Optional[int]:
    """"HH:MM" -> minutes after midnight; "" -> None. ValueError on anything else."""
    if text == "":
        return None
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and (hh + mm).isascii() and (hh + mm).isdigit()):
        raise ValueError("expected HH:MM, e.g. 19:00")
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise ValueError("expected HH:MM with hours 00-23 and minutes 00-59")
    return h * 60 + m


def last_time_of_day(minutes: int, now_ms: int) -> int:
    """Unix ms of the latest local `minutes`-after-midnight at or before now_ms."""
    for back in (0, 1, 2):  # today's, else yesterday's (2: a DST change can skip the hour)
        day = time.localtime(now_ms / 1000 - back * 86400)
        ms = int(time.mktime((day.tm_year, day.tm_mon, day.tm_mday, minutes // 60, minutes % 60, 0,
                              0, 0, -1)) * 1000)
        if ms <= now_ms:
            return ms
    return now_ms - DAY_MIN * 60_000


def parse_time_or_moment(text: str) -> tuple[Optional[int], Optional[int]]:
    """(minutes after midnight, None) for "HH:MM"; (None, unix ms) for "YYYY-MM-DDTHH:MM" local time.
    ValueError saying what is expected otherwise."""
    if "T" in text:
        try:
            at = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("expected HH:MM (e.g. 19:30) or a local date and time (2026-11-23T19:30)") from None
        if at.tzinfo is None:
            return None, int(time.mktime(at.timetuple()) * 1000)
        return None, int(at.timestamp() * 1000)
    minutes = parse_time_of_day(text)
    if minutes is None:
        raise ValueError("expected HH:MM (e.g. 19:30) or a local date and time (2026-11-23T19:30)")
    return minutes, None
