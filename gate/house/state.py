"""What the house knows, behind one lock: the counts, the events it has stored, the gates it
has heard from, and which performances changed since they were last published.

Several threads touch it: the intake writes, the publisher and the dashboard read, and the
pretix link and paho's network thread mark things changed. So every read and write is a
method here that holds `lock`; nothing outside reaches into its sets and dicts. The dirty set
in particular is swapped out whole under the lock (`take_dirty`): a mark made at any moment
lands either in the set being published or in the next one, never in a set nobody looks at
again (the pretix link used to add to it unlocked while the publisher swapped it).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Iterable, Optional

from gate.bus.limits import Drops
from gate.core.clock import now_ms
from gate.core.events import ScanEvent
from gate.house import discovery
from gate.house.checkout import GATE as CHECKOUT_GATE
from gate.house.counts import HouseCounts
from gate.house.doors import DoorWatch
from gate.house.flow import DoorFlow
from gate.house.gaps import MAX_GATES, GapTracker
from gate.house.word import GateWord

log = logging.getLogger(__name__)


class HouseState:
    """The house's live state; `capacity` is `[house] capacity` (event -> seats), `mode` the venue's."""

    def __init__(self, capacity: dict, mode: str = "live", word: Optional[GateWord] = None,
                 flow: Optional[DoorFlow] = None):
        self.lock = threading.Lock()
        self.capacity = dict(capacity)
        # what does not count, and why (gate/house/word.py): flagged implausible, or its gate set aside
        self.word = word if word is not None else GateWord(None, self.capacity)
        self.counts = HouseCounts()
        self.flow = flow if flow is not None else DoorFlow()   # door flow, with a lock of its own (gate/house/flow.py)
        self.rehearsal = HouseCounts()                    # `test` scans: shown apart, never in the house count
        self.lookups: dict[str, int] = defaultdict(int)   # `info` scans per event: never counted
        self.ids: set[tuple[str, str]] = set()            # (gate, event id) stored
        self.holders: dict[str, tuple] = {}               # replaced whole, never changed in place
        self.gates: dict[str, dict] = {}
        self.doors = DoorWatch()   # instance ids, two devices under one gate id, mode vs the venue's (own lock)
        self.gaps = GapTracker()
        self.drops = Drops(log, "message")   # dropped by kind (thread-safe itself): `malformed` in /api/house
        self.duplicates = 0
        self.held_for_database = 0   # events a refusing database holds up (gate/house/ingest.py)
        self.mode = mode             # the venue's (gate/house/venuemode.py)
        self._dirty: set[str] = set(self.capacity)   # "" = something besides a performance's counts changed

    # -- what changed, for the publisher (any thread) ----------------------------
    def mark_dirty(self, event: str = "") -> None:
        """Something changed: `event`'s counts, or ("") only what the dashboard shows."""
        with self.lock:
            self._dirty.add(event)

    def take_dirty(self) -> set[str]:
        """Everything marked since the last take; the next mark starts a new set."""
        with self.lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def put_back_dirty(self, events: Iterable[str]) -> None:
        """Taken but not published (the broker was away): publish them next time."""
        with self.lock:
            self._dirty.update(events)

    def has_dirty(self) -> bool:
        with self.lock:
            return bool(self._dirty)

    # -- counting (the intake's thread) --------------------------------------------
    def restore(self, events: Iterable[ScanEvent], holders: dict) -> int:
        """Count the attendance log's events at start; returns how many."""
        n = 0
        with self.lock:
            self.holders = holders
            self.word.restore()
            for e in events:
                self.ids.add((e.gate, e.id))
                if e.gate != CHECKOUT_GATE:   # the check-out's exits are numbered 0, not in a sequence
                    self.gaps.track(e.gate, e.seq)
                self._count(e)
                n += 1
        return n

    def duplicate(self, gate: str, event_id: str) -> bool:
        """True (and counted) for an event id already stored or on its way."""
        with self.lock:
            if (gate, event_id) in self.ids:
                self.duplicates += 1
                return True
            return False

    def release(self, gate: str, event_id: str) -> None:
        """An id claimed but not stored: a later delivery of it is not a duplicate."""
        with self.lock:
            self.ids.discard((gate, event_id))
            self.word.forget(gate, event_id)

    # -- a gate's word covers its own door (gate/house/word.py) -------------------------
    def claim_and_judge(self, e: ScanEvent) -> ScanEvent:
        """A new event, before it is stored: claimed (a second delivery of its id is a duplicate), then
        placed, judged against its lane and marked."""
        with self.lock:
            self.ids.add((e.gate, e.id))
            return self.word.take(e)

    def word_pass(self) -> bool:
        """Once a second: alarms that have gone quiet; True when a set-aside was made or taken back."""
        with self.lock:
            self.word.tick()
            return self.word.poll()

    def recount(self, events: Iterable[ScanEvent]) -> None:
        """The counts again from the attendance log's events, without what does not count now."""
        events = list(events)
        with self.lock:
            self.counts, self.rehearsal, self.lookups = HouseCounts(), HouseCounts(), defaultdict(int)
            self.flow.clear()   # the door flow is counted again with them, quietly (history, not news)
            for e in events:
                self._count(e)
            self.flow.quiet = False
            for ev, cap in self.capacity.items():   # back within capacity without a new event: say so
                self.word.check_capacity(ev, self.counts.events[ev].inside if ev in self.counts.events else 0, cap)
            self._dirty |= set(self.counts.events) | {""}

    def count_stored(self, stored: list[ScanEvent], where) -> list[str]:
        """Count events now on disk; returns the performances they admitted to (for discovery).
        `where(e)` names the topic an event that fails to count is dropped under."""
        admitted = []
        with self.lock:
            for gate in {e.gate for e in stored}:
                self._seen(gate)
            for e in stored:
                if e.gate != CHECKOUT_GATE:
                    self.gaps.track(e.gate, e.seq)
                if e.result == "admitted" and e.event:
                    admitted.append(e.event)
                try:
                    self._count(e)
                except Exception as exc:   # stored; it counts after the next restart
                    self.drops.add("internal_error", where(e), repr(exc))
        return admitted

    def checkout_due(self, checkout) -> tuple[int, list[ScanEvent]]:
        """gate/house/checkout.py's CheckOut.due over the current counts."""
        with self.lock:
            return checkout.due(self.counts, self.ids)

    def count_exits(self, leaving: list[ScanEvent]) -> None:
        """The check-out's exits, stored: count them."""
        with self.lock:
            for e in leaving:
                self.ids.add((e.gate, e.id))
                self._count(e)

    def _count(self, e: ScanEvent) -> None:
        """Live scans count; rehearsal scans are kept apart; look-ups are only tallied (lock held).
        What was flagged implausible or set aside is stored but never counted."""
        if not self.word.counted(e):
            self._dirty.add("")
            return
        holder = self.holders.get(e.ticket, ("",))[0]
        if e.mode == "info":
            self.lookups[e.event] += 1
            self._dirty.add("")
        elif e.mode == "test":
            self.rehearsal.add(e, holder)
            self._dirty.add("")
        else:
            ev = self.counts.add(e, holder)
            self._dirty.add(ev)
            if ev in self.capacity:   # the alarm as the inside count passes the capacity (and comes back)
                self.word.check_capacity(ev, self.counts.events[ev].inside, self.capacity[ev])
        self.flow.count(e, self.counts, self.holders, self.mode)

    def set_holders(self, holders: dict) -> None:
        with self.lock:
            self.holders = holders

    def set_mode(self, mode: str) -> None:
        """The venue's mode, as applied; going live clears what the rehearsal counted."""
        with self.lock:
            self.mode = mode
            if mode == "live":
                self.rehearsal = HouseCounts()
            self.flow.venue_live_again()
            self._dirty.add("")

    def set_held(self, n: int) -> None:
        with self.lock:
            self.held_for_database = n

    # -- gates -----------------------------------------------------------------------
    def _seen(self, gate: str) -> bool:
        """Note a gate as seen; False for a gate beyond MAX_GATES (forged ids, counted, not tracked)."""
        g = self.gates.get(gate)
        if g is None:
            if len(self.gates) >= MAX_GATES:
                self.drops.add("gates_over_cap", gate)
                return False
            g = self.gates[gate] = {"gate": gate, "state": "unknown"}
        g["last_seen"] = now_ms()
        return True

    def gate_report(self, gate: str, kind: str, obj: dict) -> bool:
        """A gate's validated status or health message; True for a status of a gate we track."""
        with self.lock:
            if not self._seen(gate):
                return False
            self._dirty.add("")
            g = self.gates[gate]
            if kind != "status":
                g["health"] = obj
                return False
            # `since` is when we heard it: a last will carries no ts of its own (see link.py).
            g.update(state=obj["state"], profile=obj["profile"], version=obj["version"], since=now_ms(),
                     mode=obj["mode"], out_of_order=obj["out_of_order"])
            self.doors.status(gate, obj)
            return True

    def gaps_due(self) -> tuple[dict[str, list[int]], int]:
        """(missing seqs to ask each gate for now, events lost for good in all)."""
        with self.lock:
            return self.gaps.due(), self.gaps.lost_total()

    # -- reads (any thread) ------------------------------------------------------------
    def snapshots(self, events: Iterable[str]) -> list[dict]:
        """The retained house object of each performance named (DESIGN.md)."""
        with self.lock:
            return [{**self.counts.snapshot(ev, self.capacity.get(ev)), "flow": self.flow.summary(ev)}
                    for ev in events if ev]

    def wanted_events(self, now: int) -> set[str]:
        """The performances that deserve Home Assistant entities now (gate/house/discovery.py)."""
        with self.lock:
            return discovery.wanted_events(self.capacity, self.counts.last_admission, now)

    def known_events(self) -> set[str]:
        """Performances counted or configured."""
        with self.lock:
            return set(self.counts.events) | set(self.capacity)

    def conflict_ids(self) -> set[str]:
        """Ids of admissions flagged as conflicts (both entries stand; the later one is flagged)."""
        with self.lock:
            return {cid for c in self.counts.events.values() for cid in c.conflicts}

    def holders_now(self) -> dict:
        with self.lock:
            return self.holders

    def view(self) -> dict:
        """The state's part of /api/house, consistent in itself (one lock hold)."""
        with self.lock:
            caps = self.capacity
            names = sorted((set(self.counts.events) | set(caps)) - {""})
            word = self.word
            return {"events": [{**word.event_report(self.counts.detail(ev, caps.get(ev))), "flow": self.flow.detail(ev)}
                               for ev in names],
                    "gates": sorted(({**g, **self.doors.view(g["gate"], self.mode), "missing": self.gaps.missing(g["gate"]),
                                      "unrecovered": self.gaps.lost(g["gate"]), **word.gate_report(g["gate"], self.gates)}
                                     for g in self.gates.values()), key=lambda g: g["gate"]),
                    "alarms": word.alerts.active(), "word": word.report(),
                    "arrivals": list(self.counts.arrivals)[::-1][:50],
                    "rehearsal": [self.rehearsal.detail(ev) for ev in sorted(set(self.rehearsal.events) - {""})],
                    "lookups": dict(self.lookups), "mode": self.mode,
                    "malformed": self.drops.snapshot(), "duplicates": self.duplicates,
                    "limits": {"gates_untracked": self.gaps.untracked_gates, "gaps_untracked": self.gaps.untracked_gaps,
                               "held_for_database": self.held_for_database},
                    "unattributed": self.counts.unattributed()}
