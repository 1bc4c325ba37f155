"""Signed tickets that a gate verifies offline, and pretix's `pretix_sig1`.

Our format, `GT1:` + Base45(payload + signature):

    payload = 0x01                       format version
              key id      4 bytes        first bytes of SHA-256(raw public key)
              ticket id   1-byte length + UTF-8
              event       1-byte length + UTF-8
              zone        1-byte length + UTF-8
              valid_from  4 bytes BE     unix seconds, 0 = none
              valid_until 4 bytes BE     unix seconds, 0 = none
    signature = Ed25519(payload), 64 bytes

Base45 (RFC 9285) stays inside QR alphanumeric mode (5.5 bits a character),
which beats base64 in byte mode (6 bits in 8); `bench/bench_signing.py`
prints both symbol versions. Gates hold only public keys, several at once for
rotation: a stolen gate cannot mint tickets.
"""

from __future__ import annotations

import struct
from typing import Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.keys import key_id
from gate.core.events import Ticket

PREFIX = "GT1:"
VERSION = 1
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
B45_INDEX = {c: i for i, c in enumerate(B45)}


def b45encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += [B45[c], B45[d], B45[e]]
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += [B45[c], B45[d]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    try:
        vals = [B45_INDEX[c] for c in text]
    except KeyError:
        raise ValueError("not Base45") from None
    if len(vals) % 3 == 1:
        raise ValueError("bad Base45 length")
    out = bytearray()
    for i in range(0, len(vals), 3):
        chunk = vals[i:i + 3]
        if len(chunk) == 3:
            n = chunk[0] + chunk[1] * 45 + chunk[2] * 2025
            if n > 0xFFFF:
                raise ValueError("Base45 value out of range")
            out += n.to_bytes(2, "big")
        else:
            n = chunk[0] + chunk[1] * 45
            if n > 0xFF:
                raise ValueError("Base45 value out of range")
            out.append(n)
    return bytes(out)



def _lp(text: str) -> bytes:
    b = text.encode()
    if len(b) > 255:
        raise ValueError(f"{text[:20]!r}... is longer than 255 bytes")
    return bytes([len(b)]) + b


def sign_ticket(priv: Ed25519PrivateKey, ticket_id: str, event: str, zone: str = "",
                valid_from: int = 0, valid_until: int = 0) -> str:
    """A signed ticket code (times in unix seconds, 0 = unbounded)."""
    payload = (bytes([VERSION]) + key_id(priv.public_key()) + _lp(ticket_id) + _lp(event) + _lp(zone)
               + struct.pack(">II", valid_from, valid_until))
    return PREFIX + b45encode(payload + priv.sign(payload))


def open_signed(body: str, keys: dict, nfields: int):
    """Verify and unpack a GT1-framed Base45 body (version, key id, `nfields` length-prefixed
    strings, two 32-bit times, Ed25519 signature) under `keys` (key id -> public key).
    Returns (fields, time1, time2, key id) or None for anything malformed, unsigned or unknown."""
    try:
        blob = b45decode(body)
        if len(blob) < 1 + 4 + nfields + 8 + 64 or blob[0] != VERSION:
            return None
        payload, sig = blob[:-64], blob[-64:]
        key = keys.get(payload[1:5])
        if key is None:
            return None
        key.verify(sig, payload)
        pos, fields = 5, []
        for _ in range(nfields):
            n = payload[pos]
            fields.append(payload[pos + 1:pos + 1 + n].decode())
            pos += 1 + n
        t1, t2 = struct.unpack(">II", payload[pos:pos + 8])
        if pos + 8 != len(payload):
            return None
    except (ValueError, IndexError, struct.error, InvalidSignature, UnicodeDecodeError):
        return None
    return fields, t1, t2, bytes(payload[1:5])


class SignedTicketVerifier:
    """Verifies GT1 codes against the public keys a gate holds."""

    def __init__(self, public_keys):
        self.keys = {key_id(k): k for k in public_keys}

    def claims(self, text: str) -> bool:
        return text.startswith(PREFIX)

    def verify(self, text: str) -> tuple[Optional[Ticket], bool]:
        """(ticket, forged): anything malformed, unsigned or under an unknown key is forged."""
        opened = open_signed(text[len(PREFIX):], self.keys, 3)
        if opened is None:
            return None, True
        fields, vf, vu, _ = opened
        tid, event, zone = fields
        return Ticket(ticket_id=tid, event=event, zone=zone, valid_from=vf * 1000 if vf else None,
                      valid_until=vu * 1000 if vu else None, signed=True), False


