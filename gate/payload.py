"""The scan event on the wire: msgpack, version 1, checked strictly on receipt.

A receiver ignores unknown keys and drops (and counts) anything malformed.
"""

from __future__ import annotations

import re

import msgpack

from .errors import PayloadError
from .events import REASONS, RESULTS, ScanEvent

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


def unpack_scan(data: bytes) -> ScanEvent:
    """Decode and validate a scan event; raises PayloadError(kind)."""
    obj = unpack(data, MAX_SCAN_BYTES)
    if not isinstance(obj, dict):
        raise PayloadError("not_a_map")
    if obj.get("v") != 1:
        raise PayloadError("unknown_version", repr(obj.get("v"))[:20])
    vals = {}
    for key, tp in FIELDS.items():
        v = obj.get(key)
        if not isinstance(v, tp) or isinstance(v, bool):
            raise PayloadError("bad_field", key)
        vals[key] = v
    if not ID_RE.match(vals["gate"]) or not vals["id"] or len(vals["id"]) > 128:
        raise PayloadError("bad_field", "gate/id")
    if vals["result"] not in RESULTS or vals["reason"] not in REASONS or vals["dir"] not in ("in", "out"):
        raise PayloadError("bad_field", "result/reason/dir")
    if not all(isinstance(a, str) for a in vals["attention"]) or len(vals["ticket"]) > 256 \
            or len(vals["event"]) > 128:
        raise PayloadError("bad_field", "attention/ticket/event")
    return ScanEvent(**vals)
