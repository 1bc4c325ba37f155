"""The house's intake: the worker that takes in what the bus delivered, stores it, counts it.

One thread (gate/core/worker.py) owns the attendance log's connection: it drains the MQTT
inbox in batches (gate/house/ingest.py sorts and stores them), hands back the acks of what
is on disk, tries again what a refusing database held, and once a second asks gates for the
events the broker never delivered and applies the check-out when it is due (both write to
the same log, so they run here and never beside a batch). Every step is guarded on its own:
this thread must outlive anything a message can make it do.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from gate.bus import messages, topics
from gate.core.supervisor import Supervised
from gate.house.checkout import CheckOut
from gate.house.ingest import Ingest
from gate.house.log import AttendanceLog
from gate.house.mqtt import HouseMqtt
from gate.house.state import HouseState

log = logging.getLogger(__name__)

BATCH = 2000        # messages taken from the inbox at once (one SQLite transaction)
IDLE_S = 0.005      # an empty inbox is looked at again after this
EVERY_S = 1.0       # between passes over the gaps and the check-out
LOG_EVERY_S = 30.0  # gap reports: a line per gate and pass would flood the log under attack
SETTLE_EVERY = 5000  # events counted between two settlings of the heap, when this process is the house


class Intake(Supervised):   # pretix-safe: restarted with backoff, shown in /api/house
    """`on_stored()` (optional) is told when events reached the log (the pretix link uploads them);
    `on_admitted(events)` gets the performances admitted to (Home Assistant discovery)."""

    def __init__(self, state: HouseState, ingest: Ingest, attendance: AttendanceLog, bus: HouseMqtt,
                 checkout: CheckOut, *, on_admitted: Callable, on_stored: Optional[Callable[[], None]] = None):
        super().__init__("house")
        self.state, self.ingest, self.attendance, self.bus, self.checkout = state, ingest, attendance, bus, checkout
        self.on_admitted, self.on_stored = on_admitted, on_stored
        # `gate house` sets it (HouseParts.start): what was counted, out of the cyclic collector's way
        # (gate/house/watch.py settle_heap). Without it, a backlog of 200,000 events spends about
        # 40 % of the intake's time in full collections that walk everything counted so far.
        self.settle: Optional[Callable[[], None]] = None
        self._unsettled = 0
        self._lost_logged = 0
        self._asks_logged = self._lost_logged_at = -1e9

    def run(self) -> None:
        last_pass = 0.0
        inbox = self.bus.inbox
        while not self.stopping.is_set():
            batch: list = []
            try:
                while len(batch) < BATCH:
                    batch.append(inbox.popleft())
            except IndexError:
                if not batch:
                    self.bus.flush_if_quiet()
                    self.stopping.wait(IDLE_S)
            if batch:
                self._guard(self._handle_batch, batch)
            held = self.ingest.retry_due()
            if held:
                self._guard(self._commit, held, [])
            now = time.monotonic()
            if now - last_pass >= EVERY_S:
                last_pass = now
                self._guard(self.ask_for_gaps)
                self._guard(self.apply_checkout)
                self._guard(self.word_pass)

    def _guard(self, fn, *args) -> None:
        self.state.drops.guarded(log, fn, *args)

    def _handle_batch(self, batch) -> None:
        new, acks, dups = self.ingest.sort(batch)
        self._commit(new, acks, dups)

    def _commit(self, new, acks, dups=()) -> None:
        stored, more = self.ingest.store(new)
        acks += more
        acks += self.ingest.dup_acks(dups)   # after the store: a duplicate of what it held stays unacknowledged
        if stored:
            if self.on_stored is not None:
                self.on_stored()
            venue = self.ingest.venue
            admitted = self.state.count_stored(stored, lambda e: topics.scan(venue, e.gate))
            for e in stored:
                self.checkout.note(e)
            if admitted:
                self.on_admitted(admitted)
            if self.settle is not None:
                self._unsettled += len(stored)
                if self._unsettled >= SETTLE_EVERY:
                    self._unsettled = 0
                    self.settle()
        if acks:   # only now, with the events on disk
            self.bus.acks_due(acks)

    def apply_checkout(self) -> None:
        """At the check-out time, everyone still inside leaves (gate/house/checkout.py)."""
        boundary, leaving = self.state.checkout_due(self.checkout)
        if not boundary:
            return
        self.attendance.add(leaving)
        self.state.count_exits(leaving)
        self.checkout.done(boundary)
        if leaving:
            log.info("check-out: %d still inside counted as left", len(leaving))

    def word_pass(self) -> None:
        """A set-aside made or taken back (gate/house/setaside.py): the counts again from the log."""
        if self.state.word_pass():
            self.state.recount(self.attendance.events())
            log.info("counts rebuilt from the attendance log: the set-aside changed")

    def ask_for_gaps(self) -> None:
        """Ask each gate, over its resend topic, for events the broker never handed us
        (say it was killed between acknowledging a gate and delivering to us). Only the active house asks:
        a standby keeps its gaps open, unasked, and asks for them once it takes over (gate/house/standby.py)."""
        if not self.bus.connected.is_set() or not self.bus.publishing():
            return
        due, lost = self.state.gaps_due()
        now = time.monotonic()
        if lost > self._lost_logged and now - self._lost_logged_at >= LOG_EVERY_S:
            self._lost_logged_at = now
            log.error("%d event(s) never arrived and their gates no longer have them (%d in all)",
                      lost - self._lost_logged, lost)
            self._lost_logged = lost
        if due and now - self._asks_logged >= LOG_EVERY_S:
            self._asks_logged = now
            log.warning("asking %d gate(s) again for %d missing event(s) (logged at most every 30 s)",
                        len(due), sum(len(s) for s in due.values()))
        venue = self.ingest.venue
        for gate, seqs in due.items():
            self.bus.publish(topics.resend(venue, gate), messages.pack_resend(seqs))
