"""The house's publisher: the retained count topics and Home Assistant's discovery configs.

A worker of its own (gate/core/worker.py): the intake never waits for a publish. It takes
the performances marked changed in the house state (at most four times a second), publishes
their retained objects and `inside` counts, and tells live dashboards. Every minute, and at
once when tonight's first admission to a new performance arrives, it brings Home Assistant's
entities in line with the wanted events (gate/house/discovery.py); an entity that should no
longer exist is removed with an empty retained config.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterable, Optional

from gate.bus import topics, values
from gate.core.clock import now_ms
from gate.core.supervisor import Supervised
from gate.house import discovery
from gate.house.state import HouseState

log = logging.getLogger(__name__)

PUBLISH_EVERY = 0.25    # retained house topics: at most four updates a second
DISCOVERY_EVERY = 60.0  # s between bringing Home Assistant's entities in line with tonight's events
SETTLE_S = 2.0          # after connecting, the retained configs arrive before we tidy them
TICK = 0.02             # how often the worker looks for changes
MAX_CONFIG_EVENTS = 10_000   # our retained configs remembered (by event): bounded whatever the broker holds


class Publisher(Supervised):   # pretix-safe: restarted with backoff, shown in /api/house
    """`publish(topic, payload, retain)` queues a QoS 1 message; `connected` is the client's;
    `on_published()` (optional) tells the dashboards."""

    def __init__(self, venue: str, state: HouseState, publish: Callable, connected: threading.Event,
                 on_published: Optional[Callable[[], None]] = None):
        super().__init__("house-publisher")
        self.venue = venue
        self.state = state
        self.publish = publish
        self.connected = connected
        self.on_published = on_published
        self._lock = threading.Lock()               # the discovery sets below: three threads touch them
        self._announced: set[str] = set()           # gates announced
        self._events_announced: set[str] = set()    # events whose sensors we announced this session
        self._ha_configs: dict[str, set] = {}       # event object id -> our retained config topics seen
        self._discovery_at = 0.0                    # when to bring Home Assistant's entities in line
        self._gate_configs: set[str] = set()        # gates whose connectivity config is on the broker
        self.retired: set[str] = set()              # gates whose entities were removed (gate/house/watch.py)

    def run(self) -> None:
        last_pub = 0.0
        while not self.stopping.wait(TICK):
            now = time.monotonic()
            if self._discovery_due(now):
                self._guard(self.tidy_discovery)
            if now - last_pub >= PUBLISH_EVERY and self.state.has_dirty():
                last_pub = now
                self._guard(self.publish_counts)

    def _guard(self, fn) -> None:
        """Each step on its own: this thread must outlive anything a message can make it do."""
        self.state.drops.guarded(log, fn)

    # -- the counts ------------------------------------------------------------
    def publish_counts(self) -> None:
        """Publish what changed; kept for later while the broker is away."""
        dirty = self.state.take_dirty()
        if self.connected.is_set():
            for s in self.state.snapshots(dirty):
                if not values.is_topic_level(s["event"]):
                    continue   # never a topic wildcard (stored events and config are checked; this is the last line)
                self.publish(topics.house(self.venue, s["event"]), json.dumps(s), retain=True)
                self.publish(topics.house_inside(self.venue, s["event"]), str(s["inside"]), retain=True)
        else:
            self.state.put_back_dirty(dirty)   # publish once the broker is back
        doors = self.state.doors.changed(self.state.mode)   # each door's problems (gate/house/doors.py)
        if doors is not None:
            if self.connected.is_set():
                self.publish(topics.house_doors(self.venue), doors, retain=True)
            else:
                self.state.doors.unpublished()
        if self.on_published is not None:
            self.on_published()

    # -- Home Assistant discovery ----------------------------------------------
    def online(self, settle_s: float = SETTLE_S) -> None:
        """(Re)connected (paho's network thread), or become the active house (`settle_s` 0: the configs
        are in by then): announce this session's sensors once the retained configs have arrived."""
        with self._lock:
            self._events_announced.clear()
            self._announced.clear()   # gates too: a standby that takes over announces them afresh
            self._discovery_at = time.monotonic() + settle_s

    def admitted(self, events: Iterable[str]) -> None:
        """Admissions just counted (the intake's thread): a performance not yet announced is announced now."""
        with self._lock:
            if any(ev not in self._events_announced for ev in events):
                self._discovery_at = min(self._discovery_at or 1e18, time.monotonic())

    def _discovery_due(self, now: float) -> bool:
        with self._lock:
            if not self._discovery_at or now < self._discovery_at or not self.connected.is_set():
                return False
            self._discovery_at = now + DISCOVERY_EVERY
            return True

    def config_seen(self, topic: str, payload: bytes) -> None:
        """One of the retained sensor configs on the broker (paho's network thread)."""
        gate = discovery.gate_of_connectivity(self.venue, topic)
        if gate is not None:
            with self._lock:
                if not payload:
                    self._gate_configs.discard(gate)
                elif len(self._gate_configs) < MAX_CONFIG_EVENTS:
                    self._gate_configs.add(gate)
            return
        ev = discovery.announced_event(self.venue, topic)
        if ev is None:
            return   # someone else's entity
        with self._lock:
            if payload:
                if len(self._ha_configs) < MAX_CONFIG_EVENTS:
                    self._ha_configs.setdefault(ev, set()).add(topic)
            else:
                self._ha_configs.get(ev, set()).discard(topic)

    def tidy_discovery(self) -> None:
        """Entities for the configured events and tonight's; an empty retained config removes the rest."""
        wanted = {ev for ev in self.state.wanted_events(now_ms()) if values.is_topic_level(ev)}
        keep = {discovery.object_id(ev) for ev in wanted}
        with self._lock:
            house_new = "house:alerts" not in self._announced
            self._announced.add("house:alerts")
            new = sorted(wanted - self._events_announced)
            self._events_announced.update(new)
            stale = {ev: sorted(seen) for ev, seen in self._ha_configs.items() if ev not in keep and seen}
            for ev in stale:
                self._ha_configs[ev].clear()
        if house_new:   # the alerts' event entity and the house's problem sensor (retained: once is enough)
            for topic, cfg in discovery.house_alerts(self.venue):
                self.publish(topic, json.dumps(cfg), retain=True)
        for ev in new:
            for topic, cfg in discovery.event_sensors(self.venue, ev):
                self.publish(topic, json.dumps(cfg), retain=True)
        for ev, topics_seen in stale.items():
            log.info("removing the Home Assistant sensors of event %s (not configured, not tonight's)", ev)
            for topic in topics_seen:
                self.publish(topic, "", retain=True)

    def announce_gate(self, gate: str) -> None:
        """A gate's connectivity and problem sensors, once (the intake's thread, on the gate's first status)."""
        key = "gate:" + gate
        with self._lock:
            if key in self._announced or gate in self.retired or not self.connected.is_set():
                return
            self._announced.add(key)
        for topic, cfg in (discovery.gate_connectivity(self.venue, gate), discovery.gate_problem(self.venue, gate)):
            self.publish(topic, json.dumps(cfg), retain=True)

    # -- doors that leave (gate/house/watch.py decides which) ---------------------------------
    def gate_configs(self) -> set[str]:
        """Gates whose connectivity entity is on the broker (ours, retained)."""
        with self._lock:
            return set(self._gate_configs)

    def retire_gate(self, gate: str) -> None:
        """Remove a gate's entities, connectivity and problem (empty retained configs); it is not announced
        again until `unretire_gate`."""
        with self._lock:
            self.retired.add(gate)
            self._announced.discard("gate:" + gate)
        for topic, _ in (discovery.gate_connectivity(self.venue, gate), discovery.gate_problem(self.venue, gate)):
            self.publish(topic, "", retain=True)

    def unretire_gate(self, gate: str) -> None:
        """A retired gate is back (heard again, or on the roster again): announce it again."""
        with self._lock:
            self.retired.discard(gate)
        self.announce_gate(gate)
