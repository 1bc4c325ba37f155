"""Each door as the house sees it: which device speaks for it, what mode it is in, what is wrong.

Everything here comes from the gate's own words: its retained status (mode, the venue
mode it follows, its instance id, an identity fault it latched) and its scans (the
instance that made each one). From them the house flags, per door:

- `duplicate`: two devices use one gate id (a cloned SD card). The gate says so itself
  once it has seen the other (gate/identity.py); the house also sees it on its own when
  the status topic changes hands back and forth between instances (A, B, A within an
  hour): one change is a replaced device, a second change back is two devices;
- `seq_clashes`: scans under one gate id and one sequence number from two instances:
  two outboxes numbering in one sequence. Both events are kept and counted (their ids
  differ); a ticket admitted at both is a conflict like any other (gate/house/counts.py);
- `mode_mismatch`: the door records live scans while the venue rehearses, or rehearsal
  scans while the venue is live (a door switched by a card, or one that missed the
  control message).

The flags reach `/api/house` (merged into each gate's entry), the dashboard, and one
retained topic for Home Assistant and other dashboards, `gate/<venue>/house/doors`
(JSON: gate -> its flags and `problem`). Bounded: MAX_GATES doors, a few instances and
SEQ_MEMORY sequence numbers each. Its own lock: scans arrive on the intake's thread,
reads come from the dashboard's.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Optional

from gate.core.clock import now_ms
from gate.house.gaps import MAX_GATES

SWITCH_WINDOW_MS = 3600 * 1000   # instance changes on the status topic counted over this long
DUPLICATE_SWITCHES = 2           # A -> B -> A: two devices taking turns, not one replaced
INSTANCES_KEPT = 4
SEQ_MEMORY = 512                 # per door: the newest sequence numbers and who made them


@dataclass
class Door:
    state: str = ""
    mode: str = ""                 # entry, exit, info, test: the gate's own
    venue_mode: str = ""           # live, test: the venue's, as this gate follows it ("" from an older gate)
    instance: str = ""             # the device whose status spoke last
    instances: "OrderedDict[str, int]" = field(default_factory=OrderedDict)   # instance -> last heard (ms)
    switches: deque = field(default_factory=lambda: deque(maxlen=16))      # when the status changed hands
    reported: Optional[str] = None  # the gate's own identity fault
    out_of_order: Optional[str] = None
    seqs: "OrderedDict[int, tuple[str, str]]" = field(default_factory=OrderedDict)   # seq -> (instance, id)
    seq_clashes: int = 0

    def heard(self, instance: str, ts: int) -> None:
        self.instances[instance] = ts
        self.instances.move_to_end(instance)
        while len(self.instances) > INSTANCES_KEPT:
            self.instances.popitem(last=False)


def effective_mode(mode: str, venue_mode: str) -> str:
    """What the door records: `info` (nothing), `test` (rehearsal) or `live`."""
    if mode == "info":
        return "info"
    return "test" if mode == "test" or venue_mode == "test" else "live"


class DoorWatch:
    """Per door: instance ids, takeovers, sequence clashes and mode, from statuses and scans."""

    def __init__(self):
        self.doors: dict[str, Door] = {}
        self.lock = threading.Lock()
        self._published = ""
        self.untracked = 0

    def _door(self, gate: str) -> Optional[Door]:
        d = self.doors.get(gate)
        if d is None:
            if len(self.doors) >= MAX_GATES:
                self.untracked += 1
                return None
            d = self.doors[gate] = Door()
        return d

    # -- what the gates say ------------------------------------------------------
    def status(self, gate: str, st: dict, ts: Optional[int] = None) -> None:
        """A gate's validated status (gate/bus/messages.py unpack_status)."""
        ts = now_ms() if ts is None else ts
        with self.lock:
            d = self._door(gate)
            if d is None:
                return
            d.state, d.mode, d.venue_mode = st["state"], st.get("mode", ""), st.get("venue_mode", "")
            d.reported, d.out_of_order = st.get("duplicate"), st.get("out_of_order")
            inst = st.get("instance", "")
            if not inst:
                return
            if d.instance and inst != d.instance:
                d.switches.append(ts)
            d.instance = inst
            d.heard(inst, ts)

    def scan(self, e) -> None:
        """A new scan event (not a duplicate delivery): who made it, under which sequence number."""
        if not e.instance:
            return
        with self.lock:
            d = self._door(e.gate)
            if d is None:
                return
            d.heard(e.instance, now_ms())
            prev = d.seqs.get(e.seq)
            if prev is not None and prev[1] != e.id and prev[0] != e.instance:
                d.seq_clashes += 1
            d.seqs[e.seq] = (e.instance, e.id)
            if len(d.seqs) > SEQ_MEMORY:
                d.seqs.popitem(last=False)

    # -- what the house says about them ---------------------------------------------
    def _duplicate(self, d: Door, now: int) -> Optional[str]:
        if d.reported:
            return d.reported
        recent = [t for t in d.switches if now - t <= SWITCH_WINDOW_MS]
        if len(recent) >= DUPLICATE_SWITCHES:
            names = ", ".join(list(d.instances)[-2:])
            return (f"two devices use this gate id (instances {names}): its status changed hands "
                    f"{len(recent)} times in the last hour")
        return None

    @staticmethod
    def _mismatch(d: Door, venue_mode: str) -> Optional[str]:
        if d.state != "online" or not d.mode:
            return None
        door = effective_mode(d.mode, d.venue_mode)
        if door == "test" and venue_mode != "test":
            return "rehearsing while the venue is live: its scans are not counted"
        if door == "live" and venue_mode == "test":
            return "live while the venue rehearses: its scans are counted"
        return None

    def _flags(self, d: Door, venue_mode: str, now: int) -> dict:
        return {"instance": d.instance, "instances": list(d.instances), "duplicate": self._duplicate(d, now),
                "seq_clashes": d.seq_clashes, "venue_mode": d.venue_mode,
                "rehearsal": effective_mode(d.mode, d.venue_mode) == "test",
                "mode_mismatch": self._mismatch(d, venue_mode)}

    def view(self, gate: str, venue_mode: str) -> dict:
        """What /api/house adds to a gate's entry."""
        with self.lock:
            d = self.doors.get(gate)
            return self._flags(d, venue_mode, now_ms()) if d is not None else {}

    def problems(self, venue_mode: str) -> dict:
        """gate -> flags and `problem`, for the retained doors topic (Home Assistant)."""
        now = now_ms()
        out = {}
        with self.lock:
            for gate, d in sorted(self.doors.items()):
                f = self._flags(d, venue_mode, now)
                out[gate] = {"state": d.state, "mode": d.mode, "rehearsal": f["rehearsal"],
                             "duplicate": f["duplicate"], "mode_mismatch": f["mode_mismatch"],
                             "out_of_order": d.out_of_order,
                             "problem": bool(f["duplicate"] or f["mode_mismatch"] or d.out_of_order)}
        return out

    def changed(self, venue_mode: str) -> Optional[str]:
        """The doors topic's payload when it differs from the one last published, else None."""
        text = json.dumps(self.problems(venue_mode), sort_keys=True, separators=(",", ":"))
        if text == self._published:
            return None
        self._published = text
        return text

    def unpublished(self) -> None:
        """The last payload did not reach the broker: send it again next time."""
        self._published = ""
