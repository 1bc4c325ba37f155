"""The house count: what is true of each performance, from scan events alone.

Events can arrive late and out of order (a gate's outbox drains after an
outage), so each ticket's events are kept and replayed in time order when one
arrives; the totals move by the difference. The counts are then the same
whatever order the same events came in.

Per ticket, in time order: an admission makes it inside (an admission while
already inside is a conflict: both stand, the later one is flagged); an exit
makes it outside; an `annulled` event cancels the admission with the same
gate and time. Exits without a ticket (an exit sensor) count as exits and
take one off `inside`.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Optional

from gate.core.clock import now_ms
from gate.core.events import ScanEvent

MINUTES_KEPT = 120
# No real ticket is scanned this often in one performance; beyond it a ticket's further events are
# not counted (counted as `flooded` instead), so one ticket can never cost unbounded work. The cap
# is per gate as well: one gate (a stolen credential) filling a ticket's history cannot stop the
# patron's real admission at another door from counting.
MAX_EVENTS_PER_TICKET = 1024
MAX_EVENTS_PER_TICKET_GATE = 64


class TicketState:
    """One ticket's events in one performance (one made for every ticket that comes: kept small and quick)."""
    __slots__ = ("events", "keys", "annulled", "per_gate", "admitted", "inside", "conflicts")

    def __init__(self) -> None:
        self.events: list = []          # ScanEvents of this ticket, kept in time order
        self.keys: list = []            # their sort keys, for bisect
        self.annulled: set = set()      # (gate, ts) of annulments
        self.per_gate: dict = {}        # gate -> events of this ticket from it
        self.admitted = False
        self.inside = False
        self.conflicts: tuple = ()      # ids of flagged (later) admissions


@dataclass
class EventCounts:
    admitted: int = 0          # distinct tickets admitted (annulled ones not)
    inside_tickets: int = 0
    anonymous_exits: int = 0
    exited: int = 0
    annulled: int = 0
    rejected: dict = field(default_factory=lambda: defaultdict(int))
    gates: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    minutes: dict = field(default_factory=lambda: defaultdict(int))   # unix minute -> admissions
    conflicts: dict = field(default_factory=dict)                      # event id -> conflict info
    flooded: int = 0           # events beyond MAX_EVENTS_PER_TICKET, not counted

    @property
    def inside(self) -> int:
        return max(0, self.inside_tickets - self.anonymous_exits)


def replay(events: list, annulled: set) -> tuple[bool, bool, list, Optional[ScanEvent]]:
    """(admitted, inside, conflicting admissions, first admission) for one ticket's events in time order.

    One pass, no sorting: the events are kept in order as they arrive.
    """
    inside = admitted = False
    conflicts: list = []
    first: Optional[ScanEvent] = None
    for e in events:
        if e.result == "admitted":
            if (e.gate, e.ts) in annulled:
                continue
            if inside and e.reason != "reentry":
                conflicts.append(e)
            if first is None:
                first = e
            inside = admitted = True
        elif e.result == "exited":
            inside = False
    return admitted, inside, conflicts, first


class HouseCounts:
    def __init__(self):
        self.events: dict[str, EventCounts] = defaultdict(EventCounts)
        self.tickets: dict[tuple, TicketState] = defaultdict(TicketState)
        self.last_event_at_gate: dict[str, str] = {}
        self.last_admission: dict[str, int] = {}    # event -> newest admission ts (tonight's events)
        self.arrivals: deque = deque(maxlen=200)   # notable arrivals, newest last
        self.seen = 0

    def add(self, e: ScanEvent, holder: str = "") -> str:
        """Count one new (not duplicate) event; returns the performance it changed."""
        self.seen += 1
        if e.result == "rejected":
            # An unknown or forged code names no event: counted apart (under ""), never
            # guessed from what the gate saw last (which can be yesterday's).
            ev = e.event
        else:
            # An exit sensor's passage names no event either; it leaves the event this gate admits to.
            ev = e.event or self.last_event_at_gate.get(e.gate, "")
        if e.event and e.result != "rejected":
            self.last_event_at_gate[e.gate] = e.event
        if e.result == "admitted" and ev:
            self.last_admission[ev] = max(self.last_admission.get(ev, 0), e.ts)
        c = self.events[ev]
        if e.result == "rejected":
            c.rejected[e.reason] += 1
            c.gates[e.gate]["rejected"] += 1
            return ev
        t = self.tickets[(ev, e.ticket)] if e.ticket or e.result != "exited" else None
        if t is not None and (len(t.events) >= MAX_EVENTS_PER_TICKET
                              or t.per_gate.get(e.gate, 0) >= MAX_EVENTS_PER_TICKET_GATE):
            c.flooded += 1
            return ev
        if e.result == "exited":
            c.exited += 1
            c.gates[e.gate]["exited"] += 1
            if not e.ticket:
                c.anonymous_exits += 1
                return ev
        if e.result == "annulled":
            c.annulled += 1
            c.gates[e.gate]["annulled"] += 1
        if e.result == "admitted":
            c.gates[e.gate]["admitted"] += 1
            c.minutes[e.ts // 60000] += 1
            if len(c.minutes) > MINUTES_KEPT + 10:
                for m in sorted(c.minutes)[:-MINUTES_KEPT]:
                    del c.minutes[m]
            if e.attention:
                self.arrivals.append({"ts": e.ts, "gate": e.gate, "event": ev, "ticket": e.ticket,
                                      "holder": holder, "tags": list(e.attention)})
        if e.result == "annulled":
            m = e.ts // 60000
            if c.minutes.get(m):
                c.minutes[m] -= 1
        assert t is not None   # only an anonymous exit has no ticket state, and it was counted above
        key = (e.ts, e.seq, e.gate)   # a ticket's events in time order
        if not t.events and e.result == "admitted":
            # A ticket's first event, an admission, as nearly every one is: what replay() would say of it
            t.events.append(e)
            t.keys.append(key)
            t.per_gate[e.gate] = 1
            c.admitted += 1
            c.inside_tickets += 1
            t.admitted = t.inside = True
            return ev
        i = bisect.bisect(t.keys, key)
        t.keys.insert(i, key)
        t.events.insert(i, e)
        t.per_gate[e.gate] = t.per_gate.get(e.gate, 0) + 1
        if e.result == "annulled":
            t.annulled.add((e.gate, e.ts))
        admitted, inside, conflicts, first = replay(t.events, t.annulled)
        c.admitted += int(admitted) - int(t.admitted)
        c.inside_tickets += int(inside) - int(t.inside)
        for cid in t.conflicts:
            c.conflicts.pop(cid, None)
        for flagged in conflicts:
            assert first is not None   # a conflict is a second admission: there was a first
            c.conflicts[flagged.id] = {"ticket": e.ticket, "gate": flagged.gate, "ts": flagged.ts,
                                       "first_gate": first.gate, "first_ts": first.ts}
        t.admitted, t.inside, t.conflicts = admitted, inside, tuple(x.id for x in conflicts) if conflicts else ()
        return ev

    def unattributed(self) -> dict:
        """Rejections of codes that name no event (unknown, forged, oversized ...)."""
        c = self.events.get("")
        return {"rejected": sum(c.rejected.values()) if c else 0,
                "rejected_by_reason": dict(c.rejected) if c else {}}

    def snapshot(self, ev: str, capacity: int | None = None) -> dict:
        """The retained house object of one performance (DESIGN.md)."""
        c = self.events[ev]
        return {"event": ev, "inside": c.inside, "admitted": c.admitted, "exited": c.exited,
                "rejected": sum(c.rejected.values()), "capacity": capacity, "ts": now_ms()}

    def detail(self, ev: str, capacity: int | None = None) -> dict:
        c = self.events[ev]
        d = self.snapshot(ev, capacity)
        now_min = int(time.time() // 60)
        d.update({
            "annulled": c.annulled,
            "flooded": c.flooded,
            "rejected_by_reason": dict(c.rejected),
            "by_gate": {g: dict(v) for g, v in c.gates.items()},
            "per_minute": [[m * 60000, c.minutes.get(m, 0)] for m in range(now_min - MINUTES_KEPT + 1, now_min + 1)],
            "conflicts": sorted(c.conflicts.values(), key=lambda x: x["ts"]),
        })
        return d
