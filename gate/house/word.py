"""A gate's word covers its own door, at the house (docs/contract.md).

Every new scan event passes through `take()` before it is stored:
- a gate whose clock is not synchronised has its event placed at the time the house
  received it (gate/house/unsynced.py), never at the time it claims;
- an admission or exit beyond what one lane can pass (gate/core/lane.py, judged on the
  events' own times) is flagged `implausible`: stored with its flag, not counted, not
  uploaded to pretix, and shown per gate and per performance;
- an event from a gate whose reports are set aside (gate/house/setaside.py) is stored,
  not counted and not uploaded.
`counted(e)` tells the counting which events count. The house also alarms when a
performance's inside count passes its capacity, and says when a gate's claims go
beyond its lane: both on /api/house (`alarms`) and the dashboard, in the log, and
through `alerts` (an object with `raise_(key, kind, level, text, event=, gate=)`,
`clear(key)` and `active()`: the house's alerts topic where it has one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Optional

from gate.core.clock import now_ms
from gate.core.events import ScanEvent
from gate.core.lane import LaneMeter, kind_of
from gate.house.setaside import current as set_aside_now
from gate.house.unsynced import UnsyncedTimes

log = logging.getLogger(__name__)

QUIET_S = 600.0    # an implausible-claims alarm stands until its gate has made none for this long


class LoggedAlarms:
    """The alarms that stand, kept for /api/house and logged when raised and cleared (the fallback
    where the house has no alerts publisher; same methods)."""

    def __init__(self):
        self._active: dict[str, dict] = {}
        self._lock = threading.Lock()

    def raise_(self, key: str, kind: str, level: str, text: str, *, event: str = "", gate: str = "",
               tags: tuple = ()) -> bool:
        with self._lock:
            old = self._active.get(key)
            if old is not None and (old["level"], old["text"]) == (level, text):
                return False
            self._active[key] = {"key": key, "kind": kind, "level": level, "text": text, "event": event,
                                 "gate": gate, "tags": list(tags), "since": old["since"] if old else now_ms()}
        (log.error if level == "critical" else log.warning)("alarm (%s): %s", kind, text)
        return True

    def clear(self, key: str, text: str = "") -> bool:
        with self._lock:
            old = self._active.pop(key, None)
        if old is not None:
            log.info("alarm over (%s): %s", old["kind"], text or old["text"])
        return old is not None

    def active(self) -> list[dict]:
        with self._lock:
            return sorted(self._active.values(), key=lambda a: a["since"])


def _round(n: int) -> int:
    """1, 10, 100, ...: an alarm's text changes (and is sent again) an order of magnitude at a time."""
    return 10 ** (len(str(n)) - 1)


class GateWord:
    """Judges, places and marks the house's incoming events; see the module's docstring."""

    def __init__(self, log_store=None, capacity: Optional[dict] = None, alerts=None, clock=time.monotonic):
        self.log_store = log_store   # the attendance log (None: a state kept in memory only, as in tests)
        self.capacity = capacity or {}
        self.alerts = alerts if alerts is not None else LoggedAlarms()
        self.clock = clock
        self.lane = LaneMeter(clock)
        self.times = UnsyncedTimes(log_store.placed_ts if log_store is not None else None)
        self.excluded: dict[tuple[str, str], tuple] = {}  # (gate, id) -> (implausible | set_aside, event)
        self.pending: dict[tuple[str, str], tuple] = {}  # (gate, id) -> (flag, sent ts), until stored
        self.set_aside: dict[str, int] = {}              # gate -> since (ms)
        self.by_gate: dict[str, dict] = defaultdict(lambda: {"implausible": 0, "set_aside": 0})
        self.by_event: dict[str, dict] = defaultdict(lambda: {"implausible": 0, "set_aside": 0})
        self._last_flag: dict[str, float] = {}
        self._over: set[str] = set()

    # -- at start, and when the set-aside changes -------------------------------------
    def restore(self) -> None:
        """What the attendance log says does not count (flags, and the gates set aside now)."""
        if self.log_store is None:
            return
        self.set_aside = set_aside_now(self.log_store.db)
        self.excluded.clear()
        self.by_gate.clear()
        self.by_event.clear()
        for gate, eid, ev, why in self.log_store.excluded():
            self._exclude(gate, eid, ev, why)
        for gate, since in self.set_aside.items():   # standing after a restart too
            self.alerts.raise_(f"set_aside:{gate}", "security", "warn",
                               f"reports of {gate} since {time.strftime('%H:%M', time.localtime(since / 1000))}"
                               " are set aside: kept, not counted, not uploaded", gate=gate)

    def poll(self) -> bool:
        """True when the set-aside changed since the last look (the caller recounts)."""
        if self.log_store is None:
            return False
        now = set_aside_now(self.log_store.db)
        if now == self.set_aside:
            return False
        for gate in set(self.set_aside) - set(now):
            self.alerts.clear(f"set_aside:{gate}", f"reports of {gate} taken back: counted again")
        self.restore()
        return True

    # -- each new event ---------------------------------------------------------------
    def take(self, e: ScanEvent) -> ScanEvent:
        """A new (not duplicate) event: placed, judged and marked; returns it as it is stored."""
        now = now_ms()
        sent = None
        if e.clock == "unsynced":
            placed, sent = self.times.place(e, now)
        else:
            placed = e
        why = ""
        if e.mode != "info" and (e.result == "exited" or (e.result == "admitted" and e.ticket)):
            why = self.lane.judge(e.gate, e.result, e.ts, e.clock != "unsynced", now)
        if why:
            self._flagged(e, why)
            self._exclude(e.gate, e.id, e.event, "implausible")
        elif e.gate in self.set_aside and now >= self.set_aside[e.gate]:
            self._exclude(e.gate, e.id, e.event, "set_aside")
        if why or sent is not None:
            self.pending[(e.gate, e.id)] = ("implausible" if why else "", sent)
        return placed

    def stored(self, events) -> None:
        """These events are in the log: their marks are no longer needed."""
        for e in events:
            self.pending.pop((e.gate, e.id), None)

    def forget(self, gate: str, event_id: str) -> None:
        """An event the log refused: it was never stored, so it does not stand as flagged or set aside."""
        self.pending.pop((gate, event_id), None)
        was = self.excluded.pop((gate, event_id), None)
        if was:
            why, ev = was
            self.by_gate[gate][why] -= 1
            self.by_event[ev][why] -= 1

    def counted(self, e: ScanEvent) -> bool:
        return (e.gate, e.id) not in self.excluded

    def _exclude(self, gate: str, eid: str, ev: str, why: str) -> None:
        if (gate, eid) not in self.excluded:
            self.excluded[(gate, eid)] = (why, ev)
            self.by_gate[gate][why] += 1
            self.by_event[ev][why] += 1

    def _flagged(self, e: ScanEvent, why: str) -> None:
        self._last_flag[e.gate] = self.clock()
        n = self.by_gate[e.gate]["implausible"] + 1
        what = "admissions" if kind_of(e.result) == "in" else "exits"
        claim = (f"claims {what} stamped ahead of the house's clock" if why == "future"
                 else f"claims more {what} than one lane can pass")
        self.alerts.raise_(
            f"implausible:{e.gate}", "security", "critical",
            f"{e.gate} {claim} ({_round(n):,}+ so far): not counted, not uploaded, not believed by the other "
            f"doors. If its Pi is missing: gate broker revoke {e.gate}, then gate house set-aside {e.gate} "
            "--since TIME", gate=e.gate, event=e.event)

    # -- every second, and when counts are published --------------------------------
    def tick(self) -> None:
        """Clear the implausible-claims alarm of a gate that has been quiet for QUIET_S."""
        now = self.clock()
        for gate, at in list(self._last_flag.items()):
            if now - at >= QUIET_S:
                del self._last_flag[gate]
                self.alerts.clear(f"implausible:{gate}", f"{gate} has made no implausible claim for "
                                                         f"{QUIET_S / 60:.0f} min")

    def check_capacity(self, ev: str, inside: int, capacity: Optional[int]) -> bool:
        """Alarm when a performance's inside count passes its capacity (raised once, as it passes), and
        say when it is back within; True while it is over."""
        over = capacity is not None and capacity > 0 and inside > capacity
        if over:
            if ev not in self._over:
                self._over.add(ev)
                self.alerts.raise_(f"capacity:{ev}", "capacity", "critical",
                                   f"{ev}: {inside} inside, more than its capacity of {capacity}", event=ev)
        elif ev in self._over:
            self._over.discard(ev)
            self.alerts.clear(f"capacity:{ev}", f"{ev}: {inside} inside, back within capacity {capacity}")
        return over

    # -- what /api/house shows ---------------------------------------------------------
    def gate_report(self, gate: str, gates: dict) -> dict:
        """What /api/house adds to a gate: the house's judgement of its claims, its set-aside, and what the
        other gates' health says of its claims (`gates`: the house's gate records, with their health)."""
        c = self.by_gate.get(gate, {})
        seen_by = {}
        for g in gates.values():
            theirs = (g.get("health") or {}).get("implausible") or {}
            if gate in theirs:
                seen_by[g["gate"]] = theirs[gate]
        return {"implausible": c.get("implausible", 0), "implausible_seen_by": seen_by,
                "set_aside_since": self.set_aside.get(gate), "set_aside_events": c.get("set_aside", 0)}

    def event_report(self, detail: dict) -> dict:
        """A performance's detail (gate/house/counts.py) with what did not count, and the capacity alarm."""
        c = self.by_event.get(detail["event"], {})
        cap = detail.get("capacity")
        return {**detail, "implausible": c.get("implausible", 0), "reports_set_aside": c.get("set_aside", 0),
                "over_capacity": bool(cap) and detail["inside"] > cap}

    def report(self) -> dict:
        """The house-wide figures: gates set aside (since when), the lane meter's judgements, unsynced events placed."""
        lane = self.lane.report()
        return {"set_aside": dict(self.set_aside), "implausible": lane["gates"], "implausible_why": lane["why"],
                "lane_untracked": lane["untracked"], "unsynced_placed": self.times.seen}
