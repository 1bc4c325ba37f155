"""What the house takes in from the bus: one message at a time, each on its own.

A batch of messages from paho's network thread is sorted into new scan
events, gate status and health, and drops. Each message is handled inside its
own guard: a malformed or hostile one is dropped and counted (and
acknowledged, so the broker does not hand it back for ever), and never costs
the good messages beside it. Scan events are then written to SQLite in one
transaction; if that fails, row by row, so one row the database refuses is
dropped and counted alone. A database that refuses everything (disk full,
I/O error) keeps the events, unacknowledged, and they are tried again.
Each new scan event is placed, judged and marked by gate/house/word.py (through
the state) before it is stored: a gate's word covers its own door.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Callable

from gate.bus import messages, topics, values
from gate.bus.codec import unpack_scan
from gate.core.errors import PayloadError
from gate.house.log import AttendanceLog
from gate.house.state import HouseState

log = logging.getLogger(__name__)

RETRY_S = 1.0          # a database that refused a whole batch is tried again after this
MAX_UNSTORED = 50_000  # events held for a refusing database (each still unacknowledged at the broker)
# Performances the house counts (each gets retained topics and Home Assistant sensors). A venue has a few
# a night; past this many, scans for performances neither configured nor seen before are dropped.
MAX_EVENTS = 500


class Ingest:
    """Sorts and stores (on the intake's thread). What is not a scan goes to the handlers:
    `on_tickets(payload)` and `on_control(payload)` for the venue's ticket list and control
    message, `on_report(gate, kind, obj)` for a gate's validated status or health."""

    def __init__(self, venue: str, state: HouseState, attendance: AttendanceLog, *, on_tickets: Callable,
                 on_control: Callable, on_report: Callable):
        self.venue = venue
        self.state = state
        self.attendance = attendance
        self.on_tickets, self.on_control, self.on_report = on_tickets, on_control, on_report
        self.configured = frozenset(state.capacity)
        self.unstored: list = []     # (event, acks) the database refused, with when to try again
        self.events: set[str] = state.known_events()   # performances accepted
        self._retry_at = 0.0
        # the venue's topics, made once: each message is compared with them
        self._house, self._tickets, self._control = topics.house_prefix(venue), topics.tickets(venue), \
            topics.control(venue)
        self._venue = f"{topics.ROOT}/{venue}/"

    # -- sorting ------------------------------------------------------------------
    def sort(self, batch) -> tuple[list, list, list]:
        """(new scan events with their acks, acks of everything else but duplicates, duplicates: the
        (gate, id) each repeats with its ack: see `dup_acks`)."""
        new, acks, dups = [], [], []
        for topic, payload, mid, qos in batch:
            ack = [(mid, qos)] if qos else []
            try:
                e = self._one(topic, payload)
            except Exception as exc:   # a bug must cost one message, never the batch or the thread
                self.state.drops.add("internal_error", topic, repr(exc))
                log.debug("message on %s failed", topic, exc_info=True)
                e = None
            if e is None:
                acks += ack
            elif type(e) is tuple:
                dups.append((e, ack))
            else:
                new.append((e, ack))
        return new, acks, dups

    def dup_acks(self, dups: list) -> list:
        """The acks of duplicates whose first copy is on disk. One whose first copy is held for a refusing
        database is not acknowledged: the broker's copy is then the only one that survives a stop (it is
        handed over again on reconnect, and acknowledged once the first is stored)."""
        held = self.held_ids if dups and self.unstored else ()
        return [a for key, ack in dups if key not in held for a in ack]

    @property
    def held_ids(self) -> set:
        """(gate, id) of the events held for a refusing database: claimed, not on disk."""
        return {(e.gate, e.id) for e, _ in self.unstored}

    def _one(self, topic: str, payload: bytes):
        drops = self.state.drops
        if topic.startswith(self._house):
            return None  # our own retained counts, echoed back
        if topic == self._tickets:
            self.on_tickets(payload)
            return None
        if topic == self._control:
            self.on_control(payload)   # verified there: signed by a staff key, newer than the last
            return None
        gate = topics.gate_of(topic)
        kind = topic.rsplit("/", 1)[-1]
        if not gate or not topic.startswith(self._venue):
            return drops.add("unknown_topic", topic)
        if not values.is_id(gate):   # a gate id no gate can have: never tracked, announced or shown
            return drops.add("bad_topic", topic[:120])
        if kind == "scan":
            try:
                e = unpack_scan(payload)
            except PayloadError as exc:
                return drops.add(exc.kind, topic, exc)
            if e.gate != gate:
                return drops.add("gate_mismatch", topic, e.gate)
            if self.state.duplicate(e.gate, e.id):   # idempotency per gate: another gate cannot claim an id
                return (e.gate, e.id)
            if e.event and e.event not in self.events:
                if len(self.events) >= MAX_EVENTS and e.event not in self.configured:
                    return drops.add("events_over_cap", topic, e.event)
                self.events.add(e.event)
            self.state.doors.scan(e)   # which device made it (two under one gate id: gate/house/doors.py)
            return self.state.claim_and_judge(e)   # on its way; placed (an unsynchronised clock), judged, marked
        if kind == "status" or kind == "health":
            if not payload:
                return None  # a cleared retained message
            try:
                obj = messages.unpack_status(payload) if kind == "status" else messages.unpack_health(payload)
            except PayloadError as exc:
                return drops.add(exc.kind, topic, exc)
            self.on_report(gate, kind, obj)
            return None
        if kind != "resend":
            drops.add("unknown_topic", topic)
        return None

    # -- storing ------------------------------------------------------------------
    def store(self, new: list) -> tuple[list, list]:
        """Write new events; returns (stored events, acks now due). Refused rows are dropped and counted;
        events the database could not take at all wait in `unstored`, unacknowledged."""
        if not new:
            return [], []
        attendance = self.attendance
        marks = self.state.word.pending   # this thread's alone (gate/house/word.py)
        try:
            attendance.add([e for e, _ in new], marks)
            self.state.word.stored(e for e, _ in new)
            return [e for e, _ in new], [a for _, ack in new for a in ack]
        except sqlite3.OperationalError as exc:   # the database (locked, full, I/O), not a row: all wait
            self._hold(new, exc)
            return [], []
        except Exception:
            log.warning("storing %d scan events in one go failed; trying them one by one", len(new))
        stored, acks, waiting = [], [], []
        for e, ack in new:
            try:
                attendance.add([e], marks)
            except sqlite3.OperationalError as exc:   # the database, not this row: keep it for later
                waiting.append((e, ack))
                last = exc
                continue
            except Exception as exc:   # this row only (a value SQLite cannot hold): drop it, keep going
                self.state.release(e.gate, e.id)
                self.state.drops.add("db_refused", topics.scan(self.venue, e.gate), repr(exc))
                acks += ack
                continue
            self.state.word.stored([e])
            stored.append(e)
            acks += ack
        if waiting:
            self._hold(waiting, last)
        return stored, acks

    def _hold(self, waiting: list, exc) -> None:
        room = MAX_UNSTORED - len(self.unstored)
        if room < len(waiting):
            # Not acknowledged: the broker still has them and hands them over again on reconnect.
            for e, _ in waiting[room:]:
                self.state.release(e.gate, e.id)
            self.state.drops.add("db_unavailable", "attendance log", exc)
            waiting = waiting[:max(0, room)]
        if waiting:
            log.error("attendance log refused %d scan events (%s); holding them, unacknowledged, to try again",
                      len(waiting), exc)
        self.unstored += waiting
        self.state.set_held(len(self.unstored))
        self._retry_at = time.monotonic() + RETRY_S

    def retry_due(self) -> list:
        """Events held for the database, when it is time to try them again."""
        if not self.unstored or time.monotonic() < self._retry_at:
            return []
        out, self.unstored = self.unstored, []
        self.state.set_held(0)   # whatever the database refuses again is held again
        return out
