"""pretix's signed offline tickets (`pretix_sig1`): protobuf payload, Ed25519 signature.

The code is base64 of `0x01 | len(payload) u16 | len(sig) u16 | payload | sig`, reversed.
Once a code carries that framing it is pretix's: anything wrong inside it from then on
(lengths, signature, protobuf) is `forged`, never `unknown`.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Optional

from gate.boxoffice.ed25519 import BadSignature, VerifyKey, from_pem, verify_key
from gate.core.events import Ticket

# field number -> (name, wire type). A known field in any other wire type is a malformed ticket.
FIELDS = {1: ("seed", 2), 2: ("item", 0), 3: ("variation", 0), 4: ("subevent", 0),
          5: ("valid_from", 0), 6: ("valid_until", 0)}
MAX_SEED = 128
MAX_KEY_FILE = 8192


def load_pretix_key(data: bytes, name: str = "key") -> VerifyKey:
    """A pretix_sig1 public key as pretix shows it (base64 of the PEM text), or PEM,
    or the raw 32 bytes in base64. Raises ValueError saying what is wrong."""
    data = data.strip()
    if not data:
        raise ValueError(f"{name}: empty")
    if not data.startswith(b"-----"):
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name}: neither PEM nor base64") from None
        if len(decoded) == 32:
            return VerifyKey(decoded)
        data = decoded.strip()
        if not data.startswith(b"-----"):
            raise ValueError(f"{name}: base64 of neither a PEM key nor a 32-byte Ed25519 key")
    try:
        return from_pem(data)
    except ValueError as exc:
        raise ValueError(f"{name}: not an Ed25519 public key in PEM ({exc})") from None


def load_pretix_key_file(path) -> VerifyKey:
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise ValueError(f"{path}: too large for a public key")
    return load_pretix_key(data, str(path))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def parse_pretix_ticket(buf: bytes) -> dict:
    """Decode pretix's protobuf `Ticket` message (wire format, no schema compiler).
    Raises ValueError for anything that is not a well-formed Ticket."""
    out: dict[str, int | str] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        val: int | bytes
        if wire == 0:
            val, pos = _varint(buf, pos)
            if val >= 1 << 63:
                val -= 1 << 64
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + n], pos + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if field in FIELDS:
            # A known field of the wrong wire type is malformed (fuzzing found an int seed and a
            # bytes validity: one crashed verify, the other multiplied into bytes).
            name, want = FIELDS[field]
            if wire != want:
                raise ValueError(f"field {name} has wire type {wire}")
            if isinstance(val, bytes):   # the seed: FIELDS' only length-delimited field
                if len(val) > MAX_SEED:
                    raise ValueError("seed too long")
                out[name] = val.decode("utf-8")
            else:
                if name in ("valid_from", "valid_until") and not 0 <= val < 1 << 40:
                    raise ValueError(f"{name} out of range")
                out[name] = val
    return out


def unframe(text: str) -> Optional[bytes]:
    """The decoded blob if `text` carries pretix_sig1's framing (reversed base64, version 1), else None."""
    if len(text) < 12 or len(text) % 4:
        return None
    try:
        blob = base64.b64decode(text[::-1].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return blob if len(blob) >= 5 and blob[0] == 0x01 else None


def split(blob: bytes) -> Optional[tuple[bytes, bytes]]:
    plen, slen = struct.unpack(">HH", blob[1:5])
    if len(blob) != 5 + plen + slen:
        return None
    return blob[5:5 + plen], blob[5 + plen:]


def ticket_seed(secret: str) -> Optional[str]:
    """The seed of a pretix_sig1 secret, unverified (for the house, which has it from pretix itself)."""
    blob = unframe(secret)
    parts = split(blob) if blob else None
    if parts is None:
        return None
    try:
        return parse_pretix_ticket(parts[0]).get("seed") or None
    except (ValueError, UnicodeDecodeError):
        return None


class PretixVerifier:
    """pretix's signed offline tickets (`pretix_sig1`), checked against every valid key.

    Keys come from the config and, once the house syncs with pretix, from the ticket list
    it publishes (read from the store; several keys may be valid at once)."""

    def __init__(self, public_keys, items: dict, subevents: dict, zones: dict, event: str = ""):
        self.keys = [verify_key(k) for k in public_keys]
        self.items, self.subevents, self.zones, self.event = items, subevents, zones, event
        self.store = None
        self._listed: tuple[str, list, str] = ("", [], "")

    def bind(self, store) -> None:
        """Also use the pretix keys and event that arrived with the ticket list."""
        self.store = store

    def _from_list(self) -> tuple[list, str]:
        raw = self.store.meta("pretix") if self.store is not None else None
        if not raw:
            return [], ""
        if raw != self._listed[0]:
            keys, event = [], ""
            try:
                d = json.loads(raw)
                event = str(d.get("event", ""))
                for k in d.get("keys", []):
                    try:
                        keys.append(load_pretix_key(str(k).encode("ascii"), "listed key"))
                    except (ValueError, UnicodeEncodeError):
                        pass
            except (ValueError, AttributeError, TypeError, RecursionError):   # a list's meta: keys or nothing
                pass
            self._listed = (raw, keys, event)
        return self._listed[1], self._listed[2]

    def claims(self, text: str) -> bool:
        if unframe(text) is None:
            return False
        return bool(self.keys) or bool(self._from_list()[0])

    def event_of(self, item: int, subevent: int, slug: str) -> str:
        """The gate event of a ticket: a date of a series only ever maps through its own
        date (series share item ids across dates), a single event through its item or slug."""
        if subevent:
            return self.subevents.get(str(subevent)) or (f"{slug}-{subevent}" if slug else "")
        return self.items.get(str(item)) or slug

    def verify(self, text: str) -> tuple[Optional[Ticket], bool]:
        blob = unframe(text)
        parts = split(blob) if blob is not None else None
        if parts is None:
            return None, True
        payload, sig = parts
        listed_keys, listed_event = self._from_list()
        for key in self.keys + listed_keys:
            try:
                key.verify(sig, payload)
                break
            except BadSignature:
                continue
        else:
            return None, True
        try:
            t = parse_pretix_ticket(payload)
        except (ValueError, UnicodeDecodeError):
            return None, True   # signed by a key we trust, yet not a ticket: never admit it
        if not t.get("seed"):
            return None, True
        item, sub = t.get("item", 0), t.get("subevent", 0)
        vf, vu = t.get("valid_from"), t.get("valid_until")
        return Ticket(ticket_id="pretix-" + t["seed"], event=self.event_of(item, sub, self.event or listed_event),
                      zone=self.zones.get(str(item), ""), valid_from=vf * 1000 if vf else None,
                      valid_until=vu * 1000 if vu else None, signed=True), False
