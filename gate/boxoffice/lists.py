"""Ticket data that reaches every gate: a versioned list, retained on MQTT.

The box office publishes `{v, version, tickets, revoked}` (msgpack, zlib)
retained on gate/<venue>/tickets. Each gate applies a newer version in one
transaction on its own connection and thread (the scan loop keeps reading the
old data until the commit), keeps it on disk so it boots offline with its
last data, and ignores anything older or equal.
"""

from __future__ import annotations

import time
import zlib
from typing import Optional

import msgpack

from gate.bus.codec import unpack
from gate.errors import PayloadError
from gate.events import TICKET_COLUMNS, Ticket, ticket_from_row, ticket_row

MAX_LIST_BYTES = 64 * 1024 * 1024
COLUMNS = TICKET_COLUMNS


def pack_list(tickets: list[Ticket], revoked=(), version: Optional[int] = None) -> bytes:
    rows = [list(ticket_row(t)) for t in tickets]
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
        tickets.append(ticket_from_row(row))
    revoked = inner.get("revoked", [])
    if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
        raise PayloadError("bad_field", "revoked")
    return version, tickets, revoked


