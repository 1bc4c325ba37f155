"""The tickets sold for each performance, as the house knows them: from the signed ticket list it
applied (the box office's, or its own made from the pretix sync: gate/house/lists.py).

Door flow needs them for the patrons still expected (sold, not yet in) and an arrival's seat, and
the night's report for its no-shows. They live in the house's database beside the holder
directory, because a house that restarts does not apply the current list a second time: it has
applied it already (gate/boxoffice/lists.py's `judge`).

`roster_sold` keeps each performance's count of sold tickets as last known, so a past performance
keeps its figure after tonight's list no longer carries its tickets: the no-show rates of past
nights feed the flow forecast (gate/house/forecast.py).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Iterable

from gate.core.events import Ticket

SCHEMA = """
CREATE TABLE IF NOT EXISTS roster (ticket_id TEXT PRIMARY KEY, event TEXT NOT NULL, seat TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roster_sold (event TEXT PRIMARY KEY, sold INTEGER NOT NULL, updated INTEGER NOT NULL);
"""
SOLD = ("valid",)   # blocked (on hold at the box office) and revoked tickets are not expected at the door


class Roster:
    """`tickets`: ticket id -> (performance, seat) of every ticket that may come; `sold`: performance ->
    tickets sold, past performances included."""

    def __init__(self, tickets: dict[str, tuple[str, str]], sold: dict[str, int]):
        self.tickets = tickets
        self.sold = sold

    @classmethod
    def read(cls, db) -> "Roster":
        """What the database holds (empty before the first list)."""
        db.executescript(SCHEMA)
        tickets = {tid: (ev, seat) for tid, ev, seat in db.execute("SELECT ticket_id, event, seat FROM roster")}
        sold = {ev: n for ev, n in db.execute("SELECT event, sold FROM roster_sold")}
        return cls(tickets, sold)

    @classmethod
    def write(cls, db, tickets: Iterable[Ticket]) -> "Roster":
        """Replace the roster with a newly applied list (one transaction); returns it."""
        rows = [(t.ticket_id, t.event, t.seat or "") for t in tickets if t.status in SOLD and t.event]
        counts = Counter(ev for _, ev, _ in rows)
        now = int(time.time() * 1000)
        db.executescript(SCHEMA)
        with db:
            db.execute("DELETE FROM roster")
            db.executemany("INSERT OR REPLACE INTO roster VALUES (?,?,?)", rows)
            # Performances the new list no longer carries keep their last figure (past nights' no-shows).
            db.executemany("INSERT OR REPLACE INTO roster_sold VALUES (?,?,?)",
                           [(ev, n, now) for ev, n in counts.items()])
        sold = {ev: n for ev, n in db.execute("SELECT event, sold FROM roster_sold")}
        return cls({tid: (ev, seat) for tid, ev, seat in rows}, sold)
