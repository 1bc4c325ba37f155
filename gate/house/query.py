"""The house's read side: the `/api/house` object and the attendance rows. Reads, never writes.

The dashboard (gate/house/web.py) gets only `api`, a function returning a fresh snapshot;
the export gets `attendance`. The state is read under its own lock in one go; whatever does
I/O (the pretix queue's figures, the attendance rows) reads with a connection of its own,
outside that lock, so a reader never holds up counting nor shares the intake's connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable, Optional

from gate.core.clock import now_ms
from gate.house import attendance
from gate.house.log import AttendanceLog
from gate.house.state import HouseState


class HouseQuery:
    """`ticket_lists()` is the lists' report; `pretix()` (when the house talks to pretix) the link's status;
    `houses()` which house is active; `alerts()` the alerts' report (gate/house/alerts.py)."""

    def __init__(self, venue: str, state: HouseState, log: AttendanceLog, *,
                 ticket_lists: Callable[[], dict] = dict, pretix: Optional[Callable[[], dict]] = None,
                 houses: Optional[Callable[[], dict]] = None, workers: Callable[[], list] = list,
                 alerts: Optional[Callable[[], dict]] = None):
        self.venue, self.state = venue, state
        self.houses = houses   # which house is active, and this one's role (gate/house/standby.py)
        self.workers = workers   # pretix-safe: the supervised workers (alerts stand in `alarms`)
        self.log_path = Path(log.path)
        self.set_aside = [str(log.set_aside)] if log.set_aside else []
        self.ticket_lists, self.pretix, self.alerts = ticket_lists, pretix, alerts

    def api(self) -> dict:
        """The `/api/house` object (DESIGN.md)."""
        v = self.state.view()
        out = {"venue": self.venue, "ts": now_ms(), **{k: v[k] for k in (
                   "events", "gates", "arrivals", "rehearsal", "lookups", "mode", "malformed", "duplicates",
                   "limits", "alarms", "word")},
               "ticket_lists": self.ticket_lists(),
               "unattributed": v["unattributed"],
               # a damaged attendance log moved aside at start: the operator should know
               "set_aside": self.set_aside,
               "workers": self.workers()}   # pretix-safe
        if self.pretix is not None:
            out["pretix"] = self.pretix()
        if self.houses is not None:
            out["houses"] = self.houses()
        if self.alerts is not None:   # the standing ones are `alarms`; these are the latest told, newest first
            report = self.alerts()
            out.update(alerts_recent=report["recent"], alerts_held_back=report["held_back"])
        return out

    def attendance(self) -> list[dict]:
        """The attendance log for the box office's CRM: one row per effective admission."""
        flagged, holders = self.state.conflict_ids(), self.state.holders_now()
        db = sqlite3.connect(self.log_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            return attendance.rows(db, flagged, holders)
        finally:
            db.close()
