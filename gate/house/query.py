"""The house's read side: the `/api/house` object and the attendance rows. Reads, never writes.

The dashboard (gate/house/web.py) gets only `api`, a function returning a fresh snapshot;
the export gets `attendance`. The state is read under its own lock in one go; the parts that
do I/O (the pretix queue's figures, read with their own connection) are read outside it, so
a dashboard never holds up counting.
"""

from __future__ import annotations

from typing import Callable, Optional

from gate.core.clock import now_ms
from gate.house import attendance
from gate.house.log import AttendanceLog
from gate.house.state import HouseState


class HouseQuery:
    """`mode()` is the venue's mode, `ticket_lists()` the lists' report, `held()` the events
    waiting for the database, `pretix()` (when the house talks to pretix) the link's status."""

    def __init__(self, venue: str, state: HouseState, log: AttendanceLog, *,
                 mode: Callable[[], str] = lambda: "live", ticket_lists: Callable[[], dict] = dict,
                 held: Callable[[], int] = lambda: 0, pretix: Optional[Callable[[], dict]] = None):
        self.venue, self.state, self.log = venue, state, log
        self.mode, self.ticket_lists, self.held, self.pretix = mode, ticket_lists, held, pretix

    def api(self) -> dict:
        """The `/api/house` object (DESIGN.md)."""
        v = self.state.view()
        out = {"venue": self.venue, "ts": now_ms(),
               "events": v["events"], "gates": v["gates"], "arrivals": v["arrivals"], "rehearsal": v["rehearsal"],
               "lookups": v["lookups"], "mode": self.mode(),
               "malformed": v["malformed"], "duplicates": v["duplicates"],
               "limits": {"gates_untracked": v["gates_untracked"], "gaps_untracked": v["gaps_untracked"],
                          "held_for_database": self.held()},
               "ticket_lists": self.ticket_lists(),
               "unattributed": v["unattributed"],
               # a damaged attendance log moved aside at start: the operator should know
               "set_aside": [str(self.log.set_aside)] if self.log.set_aside else []}
        if self.pretix is not None:
            out["pretix"] = self.pretix()
        return out

    def attendance(self) -> list[dict]:
        """The attendance log for the box office's CRM: one row per effective admission."""
        return attendance.rows(self.log.db, self.state.conflict_ids(), self.state.holders_now())
