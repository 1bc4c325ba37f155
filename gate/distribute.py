"""Ticket data that reaches every gate: a versioned list, retained on MQTT.

The box office publishes `{v, version, tickets, revoked}` (msgpack, zlib)
retained on gate/<venue>/tickets. Each gate applies a newer version in one
transaction on its own connection and thread (the scan loop keeps reading the
old data until the commit), keeps it on disk so it boots offline with its
last data, and ignores anything older or equal.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from typing import Callable, Optional

import msgpack

from .errors import PayloadError
from .events import Ticket
from .payload import unpack
from .tickets import TicketStore

log = logging.getLogger("gate.tickets")

MAX_LIST_BYTES = 64 * 1024 * 1024
COLUMNS = ("ticket_id", "code", "event", "holder", "seat", "zone", "valid_from", "valid_until",
           "status", "tags", "note", "patron")


def pack_list(tickets: list[Ticket], revoked=(), version: Optional[int] = None) -> bytes:
    rows = [[t.ticket_id, t.code, t.event, t.holder, t.seat, t.zone, t.valid_from, t.valid_until,
             t.status, ";".join(t.tags), t.note, t.patron] for t in tickets]
    body = msgpack.packb({"tickets": rows, "revoked": sorted(set(revoked))}, use_bin_type=True)
    return msgpack.packb({"v": 1, "version": version or int(time.time() * 1000),
                          "zlib": zlib.compress(body, 6)}, use_bin_type=True)


def unpack_list(data: bytes) -> tuple[int, list[Ticket], list[str]]:
    """(version, tickets, revoked ids); raises PayloadError."""
    outer = unpack(data, MAX_LIST_BYTES)
    if not isinstance(outer, dict) or outer.get("v") != 1:
        raise PayloadError("unknown_version")
    version, blob = outer.get("version"), outer.get("zlib")
    if not isinstance(version, int) or not isinstance(blob, bytes):
        raise PayloadError("bad_field", "version/zlib")
    try:
        d = zlib.decompressobj()
        body = d.decompress(blob, MAX_LIST_BYTES)
        if d.unconsumed_tail:
            raise PayloadError("oversized", "ticket list expands too far")
    except zlib.error as exc:
        raise PayloadError("bad_zlib", str(exc)) from None
    inner = unpack(body, MAX_LIST_BYTES)
    if not isinstance(inner, dict) or not isinstance(inner.get("tickets"), list):
        raise PayloadError("bad_field", "tickets")
    tickets = []
    for row in inner["tickets"]:
        if not isinstance(row, list) or len(row) != len(COLUMNS):
            raise PayloadError("bad_field", "ticket row")
        tid, code, event, holder, seat, zone, vf, vu, status, tags, note, patron = row
        if not all(isinstance(x, str) for x in (tid, code, event, holder, seat, zone, status, tags, note, patron)) \
                or not all(x is None or isinstance(x, int) for x in (vf, vu)):
            raise PayloadError("bad_field", "ticket row types")
        tickets.append(Ticket(tid, event, code, holder, seat, zone, vf, vu, status,
                              tuple(t for t in tags.split(";") if t), note, patron))
    revoked = inner.get("revoked", [])
    if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
        raise PayloadError("bad_field", "revoked")
    return version, tickets, revoked


class TicketUpdater:
    """Applies offered ticket lists on its own thread; only the newest waiting one."""

    def __init__(self, store_path, on_applied: Callable[[int], None] = None):
        self.store_path = store_path
        self.on_applied = on_applied
        self._slot: Optional[bytes] = None
        self._cv = threading.Condition()
        self._stop = False
        self.rejected = 0
        self._thread = threading.Thread(target=self._run, name="ticket-updater", daemon=True)

    def start(self):
        self._thread.start()

    def offer(self, payload: bytes) -> None:
        with self._cv:
            self._slot = payload
            self._cv.notify()

    def _run(self):
        store = TicketStore(self.store_path)
        try:
            while True:
                with self._cv:
                    while self._slot is None and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    data, self._slot = self._slot, None
                self.apply(store, data)
        finally:
            store.close()

    def apply(self, store: TicketStore, data: bytes) -> bool:
        try:
            version, tickets, revoked = unpack_list(data)
        except PayloadError as exc:
            self.rejected += 1
            log.warning("ignoring a malformed ticket list: %s", exc)
            return False
        if version <= store.version:
            log.info("ticket list version %d is not newer than %d: ignored", version, store.version)
            return False
        store.replace_all(tickets, revoked, version)
        log.info("ticket data version %d applied: %d tickets, %d revoked", version, len(tickets), len(revoked))
        if self.on_applied:
            self.on_applied(version)
        return True

    def close(self):
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
