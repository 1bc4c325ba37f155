"""The automatic check-out: at the venue's check-out time (say 03:00) everyone
still inside is counted as having left, so the next day starts at zero.

The house applies it, not the gates: it is the one place that counts, it runs
through the night, and one synthetic exit per ticket cannot be made twice by
two gates. Each exit is an ordinary `exited` scan event from the pseudo-gate
`checkout`, stamped with the check-out time and stored in the attendance log
like any other; its id is derived from the check-out time and the ticket, so
a restart that applies the same check-out again stores nothing new. Gates
apply the same rule on their own when they decide (gate/decide.py): an entry
made before the last check-out no longer counts as inside.
"""

from __future__ import annotations

import hashlib
import time

from gate.core.events import ScanEvent
from gate.core.timeofday import last_time_of_day, parse_time_of_day

GATE = "checkout"


class CheckOut:
    """When the next check-out is due, remembered in the house database across restarts."""

    def __init__(self, db, at: str):
        self.db = db
        self.minutes = parse_time_of_day(at)
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = db.execute("SELECT value FROM meta WHERE key='checked_out_at'").fetchone()
        self.done_at = int(row[0]) if row else 0
        self.late = False

    def note(self, e: ScanEvent) -> None:
        """An event was counted: an entry from before the last check-out, delivered after it
        (a gate that was offline overnight), is checked out at the next look. Rehearsal scans and
        look-ups never count, so they never call for a check-out."""
        if e.result == "admitted" and e.mode not in ("test", "info") and e.ts < self.done_at:
            self.late = True

    def due(self, counts, seen_ids, now_ms: int = 0) -> tuple[int, list[ScanEvent]]:
        """(boundary, exits to count now); boundary 0 when nothing is due."""
        if self.minutes is None:
            return 0, []
        boundary = last_time_of_day(self.minutes, now_ms or int(time.time() * 1000))
        if boundary <= self.done_at and not self.late:
            return 0, []
        self.late = False
        return boundary, [e for e in exits(counts, boundary) if (e.gate, e.id) not in seen_ids]

    def done(self, boundary: int) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('checked_out_at', ?)", (str(boundary),))
        self.done_at = max(self.done_at, boundary)


def exits(counts, boundary_ms: int) -> list[ScanEvent]:
    """One exit at `boundary_ms` for each ticket inside since before that time."""
    out = []
    for (ev, ticket), state in counts.tickets.items():
        if not state.inside or not ticket:
            continue
        last_in = max((e.ts for e in state.events if e.result == "admitted"), default=None)
        if last_in is None or last_in >= boundary_ms:
            continue
        digest = hashlib.sha256(f"{ev}\0{ticket}".encode()).hexdigest()[:24]
        out.append(ScanEvent(id=f"checkout-{boundary_ms}-{digest}", gate=GATE, seq=0, ts=boundary_ms,
                             event=ev, ticket=ticket, dir="out", result="exited", reason="exit"))
    return out
