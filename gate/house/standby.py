"""A standby house, and the gate every house's publishing passes: only the active house publishes.

Every house runs the election of gate/house/election.py on a worker of its own; a venue with one house
simply always wins it. This module is the election's hands on the bus:
- the gate: `HouseMqtt.publishing` answers True only while this house is active, so nothing
  it publishes (counts, status, alerts, Home Assistant, resend requests, ticket lists) leaves a standby; the
  claim itself goes out through `raw_publish`;
- the last will on `gate/<venue>/house/status` is carried only by the active house's connection (a
  standby's will would say `offline` over the active house's `online`): winning reconnects with it,
  yielding reconnects without it. The persistent session, and what waits in it, is kept either way;
- the house topics are subscribed at QoS 0 as well, so claims and wills arrive at once, never queued
  behind a backlog of scans waiting for the intake's acknowledgements;
- the retained guard: the active house remembers what it published retained under `gate/<venue>/house/`
  and, hearing there something it never sent (a cut-off house's late resend), publishes its own again.

The standby keeps its own complete log from its own persistent session and counts exactly like the active
house (both log every event keyed by gate and id), so taking over needs no hand-over of data: it says
`online`, republishes every count and its Home Assistant entities, publishes the ticket list from the copy
of pretix's data it kept warm while standing by (gate/house/pretix_link.py) and starts uploading.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from gate.bus import topics
from gate.bus.client import guarded
from gate.bus.limits import Drops
from gate.core.worker import Worker
from gate.house import election as el
from gate.house.mqtt import HouseMqtt

log = logging.getLogger(__name__)

TICK_S = 0.05   # the election looks at what arrived this often: a takeover is the settle time plus a reconnect


class RetainedGuard:
    """What this house published retained under the house prefix, to tell its own echo from another's write.

    The last KEEP payloads per topic sent within KEEP_S count as its own (an echo can arrive after the next
    publish). Bounded: at most MAX_TOPICS topics are remembered."""

    KEEP, KEEP_S, MAX_TOPICS = 8, 30.0, 4096

    def __init__(self, prefix: str, ignore: set[str]):
        self.prefix, self.ignore = prefix, ignore
        self.lock = threading.Lock()
        self.sent_by_topic: dict[str, deque] = {}
        self.foreign: set[str] = set()

    @staticmethod
    def _bytes(payload) -> bytes:
        if payload is None:
            return b""
        if isinstance(payload, (bytes, bytearray)):
            return bytes(payload)
        return str(payload).encode()   # paho sends str as UTF-8, numbers as their text

    def sent(self, topic: str, payload) -> None:
        """A retained message this house publishes (any thread)."""
        if not topic.startswith(self.prefix) or topic in self.ignore:
            return
        with self.lock:
            kept = self.sent_by_topic.get(topic)
            if kept is None:
                if len(self.sent_by_topic) >= self.MAX_TOPICS:
                    return
                kept = self.sent_by_topic[topic] = deque(maxlen=self.KEEP)
            kept.append((self._bytes(payload), time.monotonic()))

    def heard(self, topic: str, payload: bytes) -> None:
        """A message on a house topic (paho's thread): one this house never sent is noted for repair."""
        with self.lock:
            kept = self.sent_by_topic.get(topic)
            if not kept:
                return
            now = time.monotonic()
            if not any(p == payload and now - t < self.KEEP_S for p, t in kept) and payload != kept[-1][0]:
                self.foreign.add(topic)

    def repairs(self) -> list[tuple[str, tuple]]:
        """(topic, this house's latest (payload, time)) for each topic someone else wrote since the last call."""
        with self.lock:
            out = [(t, self.sent_by_topic[t][-1]) for t in self.foreign if self.sent_by_topic.get(t)]
            self.foreign.clear()
        return out

    def repaired(self, topic: str, entry: tuple) -> None:
        """`entry` was published again; if the house published something newer meanwhile, that may have
        gone out first, so the topic is repaired once more (with the newer one)."""
        with self.lock:
            if self.sent_by_topic[topic][-1] is not entry:
                self.foreign.add(topic)


class Standby(Worker):
    """The election for this house (`first`: not configured as a standby), run on its own thread.

    `on_active()` is called (on this thread) when the house becomes the active one and may publish;
    `on_change()` whenever its role changes (the dashboard shows it)."""

    def __init__(self, venue: str, house_id: str, first: bool, bus: HouseMqtt, drops: Drops, *,
                 on_active: Callable[[], None], on_change: Callable[[], None]):
        super().__init__("house-election")
        self.venue, self.bus = venue, bus
        self.election = el.Election(house_id, first)
        self.lock = threading.Lock()   # the election: paho's thread hands in, this one decides
        self.on_active, self.on_change = on_active, on_change
        self.status_topic, self.active_topic = topics.house_status(venue), topics.house_active(venue)
        self.guard = RetainedGuard(topics.house_prefix(venue), {self.status_topic, self.active_topic})
        self._sub_mid = -1
        self.drops = drops   # a claim or status that is none: dropped and counted (`malformed` in /api/house)
        bus.publishing = self.publishing
        bus.on_retained = self.guard.sent
        bus.on_house_message = self.heard
        bus.client.on_subscribe = guarded(self._on_subscribe)

    # -- the gate (any thread) ---------------------------------------------------------------
    def publishing(self) -> bool:
        """May this house publish now: it is the active house. Each (re)connect holds it back until the
        retained claim is read again (Election.connected); while the broker is away paho keeps what an
        active house publishes, as it always did."""
        return self.active()

    def active(self) -> bool:
        """This house is the active one (only then does the pretix link publish, hand on and upload)."""
        return self.election.role == el.ACTIVE

    def standing_by(self) -> bool:
        """Another house is the active one and this one stands by (its pretix link keeps its copy warm)."""
        return self.election.role == el.STANDBY

    def view(self) -> dict:
        """For /api/house: which house is active, and what this one is."""
        with self.lock:
            v = self.election.view()
        v.update(connected=self.bus.connected.is_set(), published=self.bus.published, held_back=self.bus.held_back)
        return v

    # -- paho's network thread ---------------------------------------------------------------
    def connected(self) -> None:
        """(Re)connected and subscribed to the venue: read the house topics again, at QoS 0."""
        with self.lock:
            self.election.connected()
        _, mid = self.bus.client.subscribe(topics.house_all(self.venue), 0)
        self._sub_mid = -1 if mid is None else mid

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if mid == self._sub_mid:
            with self.lock:
                self.election.subscribed(time.monotonic())

    def heard(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on a house topic; `retained`: the copy read back on subscribing."""
        now = time.monotonic()
        if topic == self.active_topic:
            claim = el.parse_claim(payload)
            if claim is None:
                if payload:
                    self.drops.add("bad_claim", topic)
                with self.lock:
                    self.election.claim_lost()   # cleared or overwritten: the active house says it again
                return
            with self.lock:
                before = self.election.best
                self.election.heard_claim(claim, not retained, now)
                raised = self.election.best != before
            if raised and claim.instance != self.election.instance:
                log.info("house %s claims the house's job (term %d)", claim.house, claim.term)
        elif topic == self.status_topic:
            state = el.parse_status(payload)
            if state is None:
                if payload:
                    self.drops.add("bad_house_status", topic)
                return
            with self.lock:
                self.election.heard_status(state, not retained, now)
        elif self.election.role == el.ACTIVE:
            self.guard.heard(topic, payload)

    # -- this thread ------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.wait(TICK_S):
            if not self.bus.connected.is_set():
                continue   # nothing is decided on a connection not yet read back (see Election.connected)
            try:
                self._tick()
            except Exception:   # this thread must outlive anything: without it the house never publishes again
                log.exception("house election failed; trying again")

    def _tick(self) -> None:
        with self.lock:
            before = self.election.role
            actions = self.election.tick(time.monotonic(), self.bus.has_will)
            mine, role = self.election.mine, self.election.role
        for action in actions:
            try:
                self._do(action, mine)
            except Exception:   # the next tick tries again (a claim is repeated, a reconnect asked for again)
                log.exception("house election: %s failed", action)
        if role == el.ACTIVE:
            for topic, entry in self.guard.repairs():
                log.warning("%s was overwritten by another house: publishing this house's again", topic)
                self.bus.raw_publish(topic, entry[0], qos=1, retain=True)
                self.guard.repaired(topic, entry)
        if role != before:
            self.on_change()

    def _do(self, action: str, mine) -> None:
        if action == el.CLAIM:
            self.bus.raw_publish(self.active_topic, mine.payload(), qos=1, retain=True)
        elif action == el.RECONNECT_WITH_WILL:
            log.warning("taking over as the active house (term %d): connecting again with the last will", mine.term)
            self.bus.reconnect(will=True)
        elif action == el.ACTIVATE:
            log.warning("this house (%s) is now the active house (term %d)", self.election.house, mine.term)
            self.on_active()
        elif action == el.YIELD:
            best = self.election.best
            log.warning("house %s is the active house (term %d): this house stands by, counting, publishing "
                        "nothing", best.house if best else "?", best.term if best else 0)
            if self.bus.has_will:
                self.bus.reconnect(will=False)
        elif action == el.SAY_ONLINE:
            log.info("the house status says offline, but this house is active: online again")
            self.bus.say_online()
