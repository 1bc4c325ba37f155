"""Times for scan events from gates whose clocks are not synchronised (`clock: "unsynced"`).

Such a `ts` says nothing about when the scan happened against anyone else's clock: it
can be years off, or a forged `ts = 1`. It was once moved onto the house's clock by one
shift per gate, taken from that gate's first such event, for the whole run; one odd
clock (or one forged event) then moved every later time of that gate. Now each event
is placed on its own: at the time the house received it, the latest it can have
happened. That never claims an earlier use than the house can vouch for, and nothing
one event says moves another's time. Among a gate's own events received together,
the sequence number keeps their order (the counts sort by time, then seq).

An annulment must land exactly where its admission did (the counts cancel the
admission with the same gate and time), and it carries the admission's own `ts`. So
the placement of each (gate, sent ts) is remembered for the run (at most PER_GATE per
gate, MAX_GATES gates), and after a restart looked up in the attendance log, which
keeps each such event's sent `ts` beside the placed one.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable, Optional

from gate.core.clock import now_ms
from gate.core.events import ScanEvent

PER_GATE = 4096
MAX_GATES = 256


class UnsyncedTimes:
    """Places unsynchronised events; `lookup(gate, ticket, sent_ts)` finds a stored admission's placed ts."""

    def __init__(self, lookup: Optional[Callable[[str, str, int], Optional[int]]] = None):
        self.lookup = lookup
        self.placed: dict[str, OrderedDict] = {}
        self.seen = 0

    def place(self, e: ScanEvent, now: Optional[int] = None) -> tuple[ScanEvent, int]:
        """(the event at its placed time, the ts it was sent with)."""
        self.seen += 1
        sent = e.ts
        memo = self.placed.get(e.gate)
        if memo is None:
            memo = OrderedDict()
            if len(self.placed) < MAX_GATES:
                self.placed[e.gate] = memo
        key = (e.ticket, sent)
        ts = memo.get(key)
        if ts is None and e.result == "annulled" and self.lookup is not None:
            ts = self.lookup(e.gate, e.ticket, sent)
        if ts is None:
            ts = now if now is not None else now_ms()
        memo[key] = ts
        memo.move_to_end(key)
        if len(memo) > PER_GATE:
            memo.popitem(last=False)
        return dataclasses.replace(e, ts=ts), sent
