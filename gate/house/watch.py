"""The house's watch: the worker that turns figures into alerts (gate/house/alerts.py).

Four times a second it tells the notable arrivals the counting noted (gate/house/flow.py);
once a second it runs the rules (gate/house/alertrules.py, gate/house/dooralerts.py) over
tonight's performances, the lanes, the doors and the security signals (the pretix link and the
word raise their own alerts through the same publisher), raises what stands and clears what no
longer does, and keeps `gate/<venue>/house/alerts/active` (retained: Home Assistant's problem
sensor) in line with what stands; once a minute it reads the curtain times the pretix sync
stored and tells the publisher which doors Home Assistant should forget
(gate/house/dooralerts.py `retired`). It never touches the attendance log, so it never holds up
counting. `step()` is one pass, for tests with an injected clock.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from typing import Callable, Optional

from gate.bus import topics
from gate.core.clock import now_ms
from gate.core.supervisor import Supervised
from gate.house import alertrules as rules
from gate.house.alerts import LEVELS, Alerts
from gate.house.curtain import read_pretix_starts
from gate.house.dooralerts import DoorAlerts, RosterFile
from gate.house.flow import DoorFlow

log = logging.getLogger(__name__)

TICK_S = 0.25
RULES_EVERY_MS = 1000
MINUTE_MS = 60_000
ACTIVE_SHOWN = 20     # standing alerts carried on the retained topic (the most serious first)


class Watch(Supervised):   # restarted with backoff if a pass ever escapes its guards; in /api/house `workers`
    """`publish(topic, payload, retain)` is the house's; `publishing()` says whether this house is the one
    that publishes (a standby does not: gate/house/standby.py); `publisher` (gate/house/publisher.py)
    removes and re-announces doors' entities; `pretix` is the link, when there is one."""

    def __init__(self, venue: str, state, flow: DoorFlow, doors: DoorAlerts, alerts: Alerts, *,
                 publish: Optional[Callable] = None, connected: Optional[threading.Event] = None,
                 publishing: Callable[[], bool] = lambda: True, publisher=None,
                 pretix=None, db_path=None, roster: str = "", forget_gate_after_h: float = 0,
                 clock: Callable[[], int] = now_ms):
        super().__init__("house-watch")
        self.venue, self.state, self.flow, self.doors, self.alerts = venue, state, flow, doors, alerts
        self.publish, self.connected, self.publisher, self.pretix = publish, connected, publisher, pretix
        self.publishing = publishing
        self.db_path, self.roster = db_path, RosterFile(roster)
        self.silent_ms = int(forget_gate_after_h * 3600_000)
        self.clock = clock
        self._standing: dict[str, float] = {}   # key -> the figure it was last sent with
        self._rules_at = self._minute_at = -1e18
        self._active_sent: Optional[str] = None
        self._was_connected = False
        self._changes = -1
        self.settle = False   # settle_heap once a minute: the `gate house` process asks for it (HouseParts.start)
        self._settled_at = clock()   # HouseParts.start settles it before the workers run

    def run(self) -> None:
        while not self.stopping.wait(TICK_S):
            self.step()

    def step(self) -> None:
        """One pass; every part guarded on its own (this thread must outlive any figure)."""
        now = self.clock()
        self._guard(self.tell_arrivals)
        if now - self._rules_at >= RULES_EVERY_MS:
            self._rules_at = now
            self._guard(self.run_rules)
        if now - self._minute_at >= MINUTE_MS:
            self._minute_at = now
            self._guard(self.read_curtains)
            self._guard(self.retire_doors)
        if self.settle and now - self._settled_at >= MINUTE_MS:
            self._settled_at = now
            self._guard(self.settle_heap)
        self._guard(self.alerts.tick)
        self._guard(self.publish_active)
        if self.alerts.changes != self._changes:   # live dashboards show the alerts: a fresh view
            self._changes = self.alerts.changes
            self.state.mark_dirty()

    def _guard(self, fn) -> None:
        self.state.drops.guarded(log, fn)

    # -- the parts -------------------------------------------------------------------------------
    def tell_arrivals(self) -> None:
        """Notable patrons just in: greet, assist, first visit (once a night each)."""
        for a in self.flow.take_arrivals():
            level, text = rules.arrival(a)
            self.alerts.notify("arrival", level, text, key=f"arrival:{a['event']}:{a['ticket']}", event=a["event"],
                               gate=a["gate"], tags=tuple(a["tags"]))

    def run_rules(self) -> None:
        now = self.clock()
        standing = set(self._standing) | {a["key"] for a in self.alerts.active()}   # the house's alarms too
        conditions: list = []
        for house in self.state.snapshots(sorted(self.state.wanted_events(now))):
            conditions += rules.capacity(house, standing)
            conditions += rules.curtain(house, now, standing)
        conditions += rules.queues(self.flow.lanes_now(now), self.doors.states(), now, standing)
        rehearsing, implausible = self.flow.signals()
        flags = self.state.doors.problems(self.state.mode)   # two devices, mode mismatches (gate/house/doors.py)
        conditions += [rules.Condition(key, kind, level, text, gate=gate)
                       for key, kind, level, text, gate in self.doors.conditions(self.state.mode, rehearsing, flags)]
        conditions += rules.security(self.flow.forged_bursts(now), implausible, now)
        self.reconcile(conditions)

    def reconcile(self, conditions: list) -> None:
        """Raise what stands (again only when its level changes or its figure moves by a quarter),
        clear what no longer does."""
        wanted = {c.key: c for c in conditions}
        for c in wanted.values():
            figure = self._standing.get(c.key)
            if figure is not None and self.alerts.level_of(c.key) == c.level \
                    and abs(c.figure - figure) <= 0.25 * max(abs(figure), 1):
                continue
            self.alerts.raise_(c.key, c.kind, c.level, c.text, event=c.event, gate=c.gate)
            self._standing[c.key] = c.figure
        active = self.alerts.active()
        for key in set(self._standing) - set(wanted):
            del self._standing[key]
            old = next((a for a in active if a["key"] == key), None)
            # replaced by as serious an alert of its kind about the same performance and door: no "resolved" line
            quiet = old is not None and any(
                a["key"] != key and (a["kind"], a["event"], a["gate"]) == (old["kind"], old["event"], old["gate"])
                and LEVELS.index(a["level"]) >= LEVELS.index(old["level"]) for a in active)
            self.alerts.clear(key, quiet=quiet)

    def read_curtains(self) -> None:
        if self.pretix is not None and self.db_path is not None:
            self.flow.set_pretix_starts(read_pretix_starts(self.db_path))

    def retire_doors(self) -> None:
        """Doors gone from the roster, or silent too long, leave Home Assistant; one heard again comes back."""
        p = self.publisher
        if p is None or not self.publishing():   # a standby's removals would go nowhere: the active house does it
            return
        scanned = {g: lane["last"] for g, lane in self.flow.lanes_now().items()}
        roster = self.roster.read()
        gates = p.gate_configs() | self.doors.known() | p.retired   # the retired too: which may come back?
        gone = self.doors.retired(gates, roster, self.silent_ms, scanned)
        for gate in gone - p.retired:
            on_roster = roster is None or (gate in roster["gates"] and gate not in roster["revoked"])
            log.info("door %s leaves Home Assistant (%s)", gate, "silent" if on_roster else "not on the broker's roster")
            p.retire_gate(gate)
        for gate in set(p.retired) - gone:
            p.unretire_gate(gate)

    def settle_heap(self) -> None:
        """What the house counted stays until it stops: once a minute, every SETTLE_EVERY events the
        intake counts (gate/house/intake.py), and at start, after the log was read, before anything runs
        (HouseParts.start), it is moved out of the cyclic collector's way, garbage collected first (only
        what is not yet settled is walked). Otherwise every full collection walks all of it, and ingest
        slows as the night's events pile up. Only for a process that is one house (`gate house`, the
        demo): frozen objects are never collected, so a process that builds and drops many houses (the
        tests) would keep them all."""
        gc.collect()
        gc.freeze()

    def publish_active(self) -> None:
        """The standing alerts, retained, whenever they change (and again after a reconnect, or when this
        house becomes the active one)."""
        connected = (self.connected is None or self.connected.is_set()) and self.publishing()
        if not connected or self.publish is None:
            self._was_connected = False
            return
        ranked = self.alerts.ranked()
        top = max((LEVELS.index(a["level"]) for a in ranked), default=-1)
        payload = json.dumps({"problem": self.alerts.problem(), "level": LEVELS[top] if top >= 0 else "",
                              "count": len(ranked),
                              "alerts": [{k: a[k] for k in ("kind", "level", "event", "gate", "text", "since")}
                                         for a in ranked[:ACTIVE_SHOWN]]}, separators=(",", ":"))
        if payload != self._active_sent or not self._was_connected:
            self.publish(topics.house_alerts_active(self.venue), payload, retain=True)
            self._active_sent = payload
            self._was_connected = True
