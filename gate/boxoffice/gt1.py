"""Signed tickets that a gate verifies offline, and pretix's `pretix_sig1`.

Our format, `GT1:` + Base45(payload + signature):

    payload = 0x02                       format version (2: the signature names its purpose)
              key id      4 bytes        first bytes of SHA-256(raw public key)
              ticket id   1-byte length + UTF-8
              event       1-byte length + UTF-8
              zone        1-byte length + UTF-8
              valid_from  4 bytes BE     unix seconds, 0 = none
              valid_until 4 bytes BE     unix seconds, 0 = none
    signature = Ed25519(b"gate ticket v2" 0x00 + payload), 64 bytes (gate/boxoffice/purpose.py)

Staff cards and venue control messages (gate/boxoffice/staff.py) share this framing
(`open_signed`) under purposes of their own, so no signature of one kind opens as another.
Format 1 (before purposes: the signature covered the bare payload) is refused as forged,
with a log line that says to re-issue; a venue may keep accepting format-1 *tickets*
until `[signing] legacy_tickets_until` (see `SignedTicketVerifier`).

Base45 (RFC 9285) stays inside QR alphanumeric mode (5.5 bits a character),
which beats base64 in byte mode (6 bits in 8); `bench/bench_signing.py`
prints both symbol versions. Gates hold only public keys, several at once for
rotation: a stolen gate cannot mint tickets.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING, Optional

from gate.boxoffice.ed25519 import BadSignature
from gate.boxoffice.keys import key_id, keyring
from gate.boxoffice.purpose import TICKET, sign, verifies
from gate.core.events import Ticket

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

PREFIX = "GT1:"
VERSION = 2          # the signature covers a purpose (gate/boxoffice/purpose.py)
LEGACY_VERSION = 1   # the signature covered the bare payload
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


def seal(priv: Ed25519PrivateKey, purpose: str, fields, t1: int, t2: int, venue: str = "") -> str:
    """The Base45 body of a signed code: version, key id, length-prefixed `fields`, two 32-bit
    times, and the signature for `purpose` (and `venue`). The caller puts the prefix in front."""
    payload = (bytes([VERSION]) + key_id(priv.public_key()) + b"".join(_lp(f) for f in fields)
               + struct.pack(">II", t1, t2))
    return b45encode(payload + sign(priv, purpose, payload, venue))


def sign_ticket(priv: Ed25519PrivateKey, ticket_id: str, event: str, zone: str = "",
                valid_from: int = 0, valid_until: int = 0) -> str:
    """A signed ticket code (times in unix seconds, 0 = unbounded)."""
    return PREFIX + seal(priv, TICKET, (ticket_id, event, zone), valid_from, valid_until)


def _unpack(blob: bytes, nfields: int):
    """(payload, signature, fields, time1, time2) of a framed blob, or None when malformed."""
    if len(blob) < 1 + 4 + nfields + 8 + 64:
        return None
    payload, sig = blob[:-64], blob[-64:]
    pos, fields = 5, []
    for _ in range(nfields):
        n = payload[pos]
        fields.append(payload[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
    if pos + 8 != len(payload):
        return None
    t1, t2 = struct.unpack(">II", payload[pos:pos + 8])
    return payload, sig, fields, t1, t2


def signed_format(body: str) -> Optional[int]:
    """The format version a framed Base45 body claims (1: from before purposes), or None."""
    try:
        blob = b45decode(body)
    except ValueError:
        return None
    return blob[0] if blob else None


def open_signed(body: str, keys: dict, nfields: int, purpose: str, venue: str = ""):
    """Verify and unpack a GT1-framed Base45 body (version 2, key id, `nfields` length-prefixed
    strings, two 32-bit times, Ed25519 signature for `purpose` at `venue`) under `keys`
    (key id -> public key). Returns (fields, time1, time2, key id) or None for anything
    malformed, unsigned, of another purpose or venue, or under an unknown key."""
    return _open(body, keys, nfields, VERSION, lambda key, sig, payload: verifies(key, sig, purpose, payload, venue))


def _open(body: str, keys: dict, nfields: int, version: int, check):
    try:
        blob = b45decode(body)
        if not blob or blob[0] != version:
            return None
        unpacked = _unpack(blob, nfields)
        if unpacked is None:
            return None
        payload, sig, fields, t1, t2 = unpacked
        key = keys.get(payload[1:5])
        if key is None or not check(key, sig, payload):
            return None
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None
    return fields, t1, t2, bytes(payload[1:5])


def _bare(key, sig: bytes, payload: bytes) -> bool:
    """Format 1's check: the signature over the bare payload (no purpose)."""
    try:
        key.verify(sig, payload)
    except BadSignature:
        return False
    return True


LEGACY_LOG_EVERY = 100   # a queue of old tickets must not flood the log: the first, then every 100th


class SignedTicketVerifier:
    """Verifies GT1 codes against the public keys a gate holds.

    legacy_until (unix seconds, 0 = never): until then, tickets signed in format 1 (before
    signatures named their purpose) are still admitted, so a venue that has sold them can
    upgrade before its last such show. Safe for tickets alone: no format-2 signature, list
    or card can ever open as a format-1 ticket (each starts its signed bytes with "gate "),
    and a format-1 card or control message never is one (their fields do not fit a ticket)."""

    def __init__(self, public_keys, legacy_until: int = 0):
        self.keys = keyring(public_keys)
        self.legacy_until = legacy_until
        self.legacy_refused = 0

    def claims(self, text: str) -> bool:
        return text.startswith(PREFIX)

    def verify(self, text: str, now_s: Optional[int] = None) -> tuple[Optional[Ticket], bool]:
        """(ticket, forged): anything malformed, unsigned or under an unknown key is forged."""
        body = text[len(PREFIX):]
        opened = open_signed(body, self.keys, 3, TICKET)
        if opened is None and signed_format(body) == LEGACY_VERSION:
            opened = self._legacy(body, int(time.time()) if now_s is None else now_s)
        if opened is None:
            return None, True
        fields, vf, vu, _ = opened
        tid, event, zone = fields
        return Ticket(ticket_id=tid, event=event, zone=zone, valid_from=vf * 1000 if vf else None,
                      valid_until=vu * 1000 if vu else None, signed=True), False

    def _legacy(self, body: str, now_s: int):
        if now_s <= self.legacy_until:
            return _open(body, self.keys, 3, LEGACY_VERSION, _bare)
        self.legacy_refused += 1
        if self.legacy_refused % LEGACY_LOG_EVERY == 1:
            log.warning("refused a GT1 ticket in the old format (signed before signatures named their purpose; "
                        "%d so far): re-issue it with `gate tickets issue`, or set [signing] legacy_tickets_until "
                        "while such tickets are still in circulation", self.legacy_refused)
        return None
