"""The small JSON messages on the bus: resend requests, gate status and health.

Each parser takes bytes from an untrusted peer and returns a clean value or
raises PayloadError(kind); nothing else escapes. Sizes are capped before
parsing; numbers are checked by range, strings by charset and length.
"""

from __future__ import annotations

import json
import math
import re

from gate.bus import values
from gate.core.errors import PayloadError

MAX_RESEND_BYTES = 16 * 1024
MAX_RESEND_SEQS = 500        # seqs in one request; the house asks in batches of at most this
MAX_STATUS_BYTES = 2048
MAX_HEALTH_BYTES = 8192
# The health figures the house keeps and shows, each with its type; anything else is ignored.
HEALTH_NUMBERS = ("fps", "decode_ms_p50", "decode_ms_p95", "outbox_depth", "ticket_data_version", "cpu_temp",
                  "frames", "verdicts", "disk_free_mb", "unrecorded", "takeovers")
HEALTH_FLAGS = ("camera_ok", "free_passage", "clock_synced", "disk_full", "disk_readonly")
HEALTH_TEXT = ("fault",)
# implausible: per other gate, the admissions and exits this gate did not believe (gate/core/lane.py)
HEALTH_COUNTERS = ("dropped", "malformed_payloads", "rejected_codes", "bus_drops", "implausible")
STATES = ("online", "offline")


def _json(data, max_bytes: int):
    if not isinstance(data, (bytes, bytearray)):
        raise PayloadError("not_bytes")
    if len(data) > max_bytes:
        raise PayloadError("oversized", f"{len(data)} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PayloadError("bad_json") from None
    if type(obj) is not dict:
        raise PayloadError("bad_json", "not an object")
    return obj


def pack_resend(seqs) -> bytes:
    return json.dumps({"seqs": sorted(seqs)[:MAX_RESEND_SEQS]}, separators=(",", ":")).encode()


def unpack_resend(data) -> list[int]:
    """The seqs a house asks for again: at most MAX_RESEND_SEQS, each in range, no repeats."""
    obj = _json(data, MAX_RESEND_BYTES)
    seqs = obj.get("seqs")
    if type(seqs) is not list or len(seqs) > MAX_RESEND_SEQS:
        raise PayloadError("bad_resend", "seqs")
    if not all(values.seq_ok(s) for s in seqs):
        raise PayloadError("bad_resend", "seq out of range")
    return sorted(set(seqs))


def _text(v, limit: int = 64) -> str:
    return v[:limit] if type(v) is str and v.isprintable() else ""


GATE_MODES = ("entry", "exit", "info", "test")   # as gate/modes.py; the bus imports no firmware
VENUE_MODES = ("live", "test")                   # as gate/boxoffice/staff.py: VENUE_ACTIONS
LIST_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}/[1-9][0-9]{0,15}$")   # "series/seq" of a signed ticket list


def unpack_status(data) -> dict:
    """A gate's (or the house's) retained status: state, profile, version, ts."""
    obj = _json(data, MAX_STATUS_BYTES)
    state = obj.get("state")
    if state not in STATES:
        raise PayloadError("bad_field", "state")
    ts = obj.get("ts")
    mode, latch = obj.get("mode"), obj.get("out_of_order")
    vmode, vissued, tl = obj.get("venue_mode"), obj.get("venue_issued"), obj.get("ticket_list")
    instance, duplicate = obj.get("instance"), obj.get("duplicate")
    return {"state": state, "profile": _text(obj.get("profile")), "version": _text(obj.get("version")),
            "ts": ts if type(ts) is int and 0 <= ts <= values.MAX_SEQ else None,
            # a gate's mode (entry, exit, info, test) and why it is out of order, when it is
            "mode": mode if mode in GATE_MODES else "",
            "out_of_order": _text(latch) if type(latch) is str and latch else None,
            # the venue control message it applied (gate or house): its mode and signed time (unix s),
            # and the signed ticket list a gate runs ("series/seq"): what the box office waits to see
            "venue_mode": vmode if vmode in VENUE_MODES else "",
            "venue_issued": vissued if type(vissued) is int and 0 <= vissued < 2 ** 32 else None,
            "ticket_list": tl if type(tl) is str and LIST_RE.match(tl) else "",
            # which device speaks for this gate id, and whether it saw another one using the id
            "instance": instance if type(instance) is str and values.INSTANCE_RE.fullmatch(instance) else "",
            "duplicate": _text(duplicate, 120) if type(duplicate) is str and duplicate else None}


def _number(v):
    if type(v) is bool or type(v) not in (int, float):
        return None
    if type(v) is float and not math.isfinite(v):
        return None
    return v if -values.MAX_SEQ <= v <= values.MAX_SEQ else None


def _counters(v) -> dict:
    """A small {name: count} map (drop counters): bounded in entries, names and values."""
    if type(v) is not dict:
        return {}
    out = {}
    for k, n in list(v.items())[:32]:
        if type(k) is str and values.TAG_RE.fullmatch(k) and _number(n) is not None:
            out[k] = n
    return out


def unpack_health(data) -> dict:
    """A gate's health report, reduced to the known figures with sane values."""
    obj = _json(data, MAX_HEALTH_BYTES)
    out = {k: _number(obj.get(k)) for k in HEALTH_NUMBERS}
    out.update({k: obj.get(k) if type(obj.get(k)) is bool else None for k in HEALTH_FLAGS})
    out.update({k: _text(obj.get(k)) or None for k in HEALTH_TEXT})
    for k in HEALTH_COUNTERS:
        v = obj.get(k)
        out[k] = _number(v) if k == "dropped" and type(v) is not dict else _counters(v)
    out.update(_ticket_lists(obj.get("ticket_lists")))
    return out


def _ticket_lists(tl) -> dict:
    """Which signed list the gate runs ("series/seq") and how many lists it ignored."""
    if type(tl) is not dict:
        return {}
    out: dict = {}
    applied = tl.get("applied")
    if type(applied) is dict and values.is_id(applied.get("series")) \
            and type(applied.get("seq")) is int and 0 < applied["seq"] < 2 ** 53:
        out["list"] = f"{applied['series']}/{applied['seq']}"
    refused = _counters(tl.get("rejected"))
    out["lists_refused"] = sum(refused.values()) if refused else 0
    return out
