"""pretix's signed offline tickets (`pretix_sig1`): protobuf payload, Ed25519 signature."""

from __future__ import annotations

import base64
import struct
from typing import Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate.events import Ticket


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def parse_pretix_ticket(buf: bytes) -> dict:
    """Decode pretix's protobuf `Ticket` message (wire format, no schema compiler)."""
    out, pos = {}, 0
    names = {1: "seed", 2: "item", 3: "variation", 4: "subevent", 5: "valid_from", 6: "valid_until"}
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
            if val >= 1 << 63:
                val -= 1 << 64
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + n], pos + n
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if field in names:
            # The seed is text, the rest are integers: a field of the wrong wire type is malformed
            # (found by fuzzing: an int seed crashed verify, a bytes validity multiplied into bytes).
            if (field == 1) != (wire == 2):
                raise ValueError(f"field {field} has wire type {wire}")
            out[names[field]] = val.decode() if field == 1 else val
    return out


class PretixVerifier:
    """pretix's signed offline tickets (`pretix_sig1`), checked with the event's public key."""

    def __init__(self, public_key: Ed25519PublicKey, items: dict, subevents: dict, zones: dict):
        self.key = public_key
        self.items, self.subevents, self.zones = items, subevents, zones

    @staticmethod
    def _blob(text: str) -> Optional[bytes]:
        try:
            blob = base64.b64decode(text[::-1].encode(), validate=True)
        except (ValueError, UnicodeEncodeError):
            return None
        if len(blob) < 5 or blob[0] != 0x01:
            return None
        plen, slen = struct.unpack(">HH", blob[1:5])
        return blob if len(blob) == 5 + plen + slen else None

    def claims(self, text: str) -> bool:
        return len(text) >= 12 and self._blob(text) is not None

    def verify(self, text: str) -> tuple[Optional[Ticket], bool]:
        blob = self._blob(text)
        if blob is None:
            return None, True
        plen, slen = struct.unpack(">HH", blob[1:5])
        payload, sig = blob[5:5 + plen], blob[5 + plen:]
        try:
            self.key.verify(sig, payload)
            t = parse_pretix_ticket(payload)
        except (InvalidSignature, ValueError, IndexError, UnicodeDecodeError):
            return None, True
        item, sub = str(t.get("item", 0)), str(t.get("subevent", 0))
        event = self.subevents.get(sub) or self.items.get(item) or ""
        vf, vu = t.get("valid_from"), t.get("valid_until")
        return Ticket(ticket_id="pretix-" + t.get("seed", ""), event=event, zone=self.zones.get(item, ""),
                      valid_from=vf * 1000 if vf else None, valid_until=vu * 1000 if vu else None,
                      signed=True), False


