"""A house's counting, door flow and alerts wired as gate/house/build.py wires them, on a clock the
test moves: scan events go in at known times and rates, figures and alerts come out."""

from __future__ import annotations

import json

from gate.core.events import ScanEvent
from gate.house.alerts import Alerts
from gate.house.curtain import Curtains
from gate.house.dooralerts import DoorAlerts
from gate.house.flow import DoorFlow
from gate.house.roster import Roster
from gate.house.state import HouseState
from gate.house.watch import Watch
from gate.house.word import GateWord

MINUTE = 60_000
# A minute boundary in local time: 2026-11-23 17:00 UTC (the tests run with the machine's zone; the
# curtain is given as a full date and time, so the zone does not matter).
T0 = 1_795_453_200_000


class Clock:
    def __init__(self, t: int = T0):
        self.t = t

    def __call__(self) -> int:
        return self.t


class House:
    """HouseState + DoorFlow + DoorAlerts + Alerts + Watch on one injected clock; `published` collects what
    the alerts and the watch publish, as (topic, JSON, retain)."""

    def __init__(self, capacity=None, curtain=None, clock=None):
        self.clock = clock or Clock()
        self.flow = DoorFlow(Curtains(curtain or {}), clock=self.clock)
        self.published: list[tuple[str, dict, bool]] = []
        self.alerts = Alerts("hall", lambda t, p, r: self.published.append((t, json.loads(p), r)), clock=self.clock)
        word = GateWord(None, capacity or {}, alerts=self.alerts, clock=lambda: self.clock() / 1000)
        self.state = HouseState(capacity or {}, word=word, flow=self.flow)
        self.doors = DoorAlerts(self.clock)
        self.watch = Watch("hall", self.state, self.flow, self.doors, self.alerts,
                           publish=lambda t, p, retain=False: self.published.append((t, json.loads(p), retain)),
                           clock=self.clock)
        self.seq = 0

    def roster(self, tickets: dict, sold: dict) -> None:
        self.flow.set_roster(Roster(tickets, sold))

    def scan(self, ticket, gate="door-a", ts=None, event="eve", result="admitted", reason="ok", **kw) -> ScanEvent:
        self.seq += 1
        e = ScanEvent(f"{gate}-{self.seq}", gate, self.seq, self.clock.t if ts is None else ts, event, ticket,
                      "in", result, reason, **kw)
        self.state.count_stored([e], lambda e: "")
        return e

    def status(self, gate, state="online", ts=True, mode="entry", out_of_order=None) -> None:
        self.doors.heard(gate, "status", {"state": state, "profile": "turnstile", "version": "t",
                                          "ts": self.clock.t if ts else None, "mode": mode, "out_of_order": out_of_order})

    def flow_of(self, ev="eve") -> dict:
        return self.flow.summary(ev)

    def alerts_of(self, kind=None) -> list[dict]:
        return [p for t, p, _ in self.published if t == "gate/hall/house/alerts" and (kind is None or p["kind"] == kind)]

    def active(self) -> dict:
        return [p for t, p, _ in self.published if t == "gate/hall/house/alerts/active"][-1]
