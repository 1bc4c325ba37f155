"""The scan event on the wire: msgpack, version 1, checked strictly on receipt.

A receiver ignores unknown keys and drops (and counts) anything malformed.
"""

from __future__ import annotations

import re

import msgpack

from gate.errors import PayloadError
from gate.events import REASONS, RESULTS, ScanEvent

MAX_SCAN_BYTES = 4096
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FIELDS = {"v": int, "id": str, "gate": str, "seq": int, "ts": int, "event": str,
          "ticket": str, "dir": str, "result": str, "reason": str, "attention": list}


def pack_scan(e: ScanEvent) -> bytes:
    return msgpack.packb({"v": e.v, "id": e.id, "gate": e.gate, "seq": e.seq, "ts": e.ts,
                          "event": e.event, "ticket": e.ticket, "dir": e.dir, "result": e.result,
                          "reason": e.reason, "attention": list(e.attention)}, use_bin_type=True)


def unpack(data: bytes, max_bytes: int):
    """msgpack from an untrusted peer: size-capped, strict, every failure a PayloadError."""
    if not isinstance(data, (bytes, bytearray)):
        raise PayloadError("not_bytes")
    if len(data) > max_bytes:
        raise PayloadError("oversized", f"{len(data)} bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # ValueError, ExtraData, FormatError, StackError, UnicodeDecodeError
        raise PayloadError("bad_msgpack", type(exc).__name__) from None


_RESULTS, _REASONS, _DIRS = frozenset(RESULTS), frozenset(REASONS), frozenset(("in", "out"))


def unpack_scan(data: bytes) -> ScanEvent:
    """Decode and validate a scan event; raises PayloadError(kind).

    Written flat: the house validates thousands of these a second."""
    obj = unpack(data, MAX_SCAN_BYTES)
    if type(obj) is not dict:
        raise PayloadError("not_a_map")
    if obj.get("v") != 1:
        raise PayloadError("unknown_version", repr(obj.get("v"))[:20])
    try:
        id_, gate, seq, ts = obj["id"], obj["gate"], obj["seq"], obj["ts"]
        event, ticket, dir_, result = obj["event"], obj["ticket"], obj["dir"], obj["result"]
        reason, attention = obj["reason"], obj["attention"]
    except KeyError as exc:
        raise PayloadError("bad_field", str(exc)) from None
    if not (type(id_) is str and type(gate) is str and type(event) is str and type(ticket) is str
            and type(dir_) is str and type(result) is str and type(reason) is str):
        raise PayloadError("bad_field", "text fields")
    if type(seq) is not int or type(ts) is not int:
        raise PayloadError("bad_field", "seq/ts")
    if type(attention) is not list or not all(type(a) is str for a in attention):
        raise PayloadError("bad_field", "attention")
    if not id_ or len(id_) > 128 or not ID_RE.match(gate):
        raise PayloadError("bad_field", "gate/id")
    if result not in _RESULTS or reason not in _REASONS or dir_ not in _DIRS:
        raise PayloadError("bad_field", "result/reason/dir")
    if len(ticket) > 256 or len(event) > 128:
        raise PayloadError("bad_field", "ticket/event")
    return ScanEvent(id_, gate, seq, ts, event, ticket, dir_, result, reason, attention)
