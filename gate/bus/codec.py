"""The scan event on the wire: msgpack, version 1, checked strictly on receipt.

A receiver ignores unknown keys and drops (and counts) anything malformed:
by shape (msgpack's own limits, types) and by value (gate/bus/values.py:
charsets, the time window, sequence ranges, enumerations).
"""

from __future__ import annotations

import msgpack

from gate.bus import values
from gate.core.errors import PayloadError
from gate.core.events import REASONS, RESULTS, ScanEvent

MAX_SCAN_BYTES = 4096
ID_RE = values.ID_RE


def pack_scan(e: ScanEvent) -> bytes:
    d = {"v": e.v, "id": e.id, "gate": e.gate, "seq": e.seq, "ts": e.ts, "event": e.event, "ticket": e.ticket,
         "dir": e.dir, "result": e.result, "reason": e.reason, "attention": list(e.attention)}
    if e.mode != "live":   # absent means live: older receivers never see the key
        d["mode"] = e.mode
    if e.clock != "ok":    # absent means a synchronised clock
        d["clock"] = e.clock
    if e.instance:         # which device of this gate id made it (absent: not said, as before)
        d["instance"] = e.instance
    return msgpack.packb(d, use_bin_type=True)


def unpack(data: bytes, max_bytes: int, *, max_items: int | None = None, max_map: int | None = None):
    """msgpack from an untrusted peer: size-capped, strict, every failure a PayloadError.

    msgpack's own limits bound what one message can make us allocate: no string,
    array or map larger than the message allows (the defaults follow max_bytes),
    no binary or extension types unless the caller wants them."""
    if not isinstance(data, (bytes, bytearray)):
        raise PayloadError("not_bytes")
    if len(data) > max_bytes:
        raise PayloadError("oversized", f"{len(data)} bytes")
    n = len(data)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=n, max_bin_len=n,
                               max_array_len=n if max_items is None else max_items,
                               max_map_len=n if max_map is None else max_map, max_ext_len=0)
    except Exception as exc:  # ValueError, ExtraData, FormatError, StackError, UnicodeDecodeError
        raise PayloadError("bad_msgpack", type(exc).__name__) from None


_RESULTS, _REASONS, _DIRS, _MODES = frozenset(RESULTS), frozenset(REASONS), frozenset(("in", "out")), \
    frozenset(values.MODES)
_EVENT_ID, _EVENT, _TICKET, _TAG = (values.EVENT_ID_RE.fullmatch, values.EVENT_RE.fullmatch,
                                    values.TICKET_RE.fullmatch, values.TAG_RE.fullmatch)


def unpack_scan(data: bytes, now_ms: int | None = None) -> ScanEvent:
    """Decode and validate a scan event; raises PayloadError(kind).

    `now_ms` is the receiver's clock; `ts` must lie within values.TS_PAST_MS
    before it and values.TS_FUTURE_MS after it. Written flat: the house
    validates thousands of these a second."""
    obj = unpack(data, MAX_SCAN_BYTES, max_items=64, max_map=32)
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
    mode = obj.get("mode", "live")
    clock = obj.get("clock", "ok")
    if clock not in ("ok", "unsynced"):
        raise PayloadError("bad_field", "clock")
    instance = obj.get("instance", "")
    if instance != "" and not (type(instance) is str and values.INSTANCE_RE.fullmatch(instance)):
        raise PayloadError("bad_field", "instance")
    if not (type(id_) is str and type(gate) is str and type(event) is str and type(ticket) is str
            and type(dir_) is str and type(result) is str and type(reason) is str and type(mode) is str):
        raise PayloadError("bad_field", "text fields")
    if type(seq) is not int or type(ts) is not int:
        raise PayloadError("bad_field", "seq/ts")
    if not values.seq_ok(seq):
        raise PayloadError("bad_seq", str(seq)[:24])
    # An unsynchronised gate's ts can be years off: its receiver re-bases it (gate/house/ingest.py).
    if not (values.ts_ok(ts, now_ms) or (clock == "unsynced" and values.seq_ok(ts))):
        raise PayloadError("bad_ts", str(ts)[:24])
    if type(attention) is not list or len(attention) > values.MAX_ATTENTION \
            or (attention and not all(type(a) is str and _TAG(a) for a in attention)):
        raise PayloadError("bad_field", "attention")
    if not _EVENT_ID(id_) or not values.ID_RE.fullmatch(gate):
        raise PayloadError("bad_field", "gate/id")
    if result not in _RESULTS or reason not in _REASONS or dir_ not in _DIRS or mode not in _MODES:
        raise PayloadError("bad_field", "result/reason/dir/mode")
    if not _TICKET(ticket) or not _EVENT(event) or event in values.RESERVED_EVENTS:
        raise PayloadError("bad_field", "ticket/event")
    return ScanEvent(id_, gate, seq, ts, event, ticket, dir_, result, reason, attention, mode, clock,
                     instance=instance)
