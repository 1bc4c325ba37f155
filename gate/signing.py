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

import base64
import hashlib
import struct
from pathlib import Path
from typing import Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .events import Ticket

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


def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(raw_public(pub)).digest()[:4]


def load_public_key(path) -> Ed25519PublicKey:
    """A public key from PEM, or from a file holding the raw key in base64."""
    data = Path(path).read_bytes().strip()
    if data.startswith(b"-----"):
        key = serialization.load_pem_public_key(data)
    else:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def load_private_key(path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def new_keypair(directory, name: str) -> tuple[Path, Path]:
    """Write NAME.key (private, mode 0600) and NAME.pub; returns their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    priv = Ed25519PrivateKey.generate()
    kp, pp = d / f"{name}.key", d / f"{name}.pub"
    if kp.exists():
        raise FileExistsError(f"{kp} exists; refusing to overwrite a signing key")
    kp.touch(mode=0o600)
    kp.write_bytes(priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pp.write_bytes(priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return kp, pp


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


class SignedTicketVerifier:
    """Verifies GT1 codes against the public keys a gate holds."""

    def __init__(self, public_keys):
        self.keys = {key_id(k): k for k in public_keys}

    def claims(self, text: str) -> bool:
        return text.startswith(PREFIX)

    def verify(self, text: str) -> tuple[Optional[Ticket], bool]:
        """(ticket, forged): anything malformed, unsigned or under an unknown key is forged."""
        try:
            blob = b45decode(text[len(PREFIX):])
            if len(blob) < 1 + 4 + 3 + 8 + 64 or blob[0] != VERSION:
                return None, True
            payload, sig = blob[:-64], blob[-64:]
            key = self.keys.get(payload[1:5])
            if key is None:
                return None, True
            key.verify(sig, payload)
            pos, fields = 5, []
            for _ in range(3):
                n = payload[pos]
                fields.append(payload[pos + 1:pos + 1 + n].decode())
                pos += 1 + n
            vf, vu = struct.unpack(">II", payload[pos:pos + 8])
            if pos + 8 != len(payload):
                return None, True
        except (ValueError, IndexError, struct.error, InvalidSignature, UnicodeDecodeError):
            return None, True
        tid, event, zone = fields
        return Ticket(ticket_id=tid, event=event, zone=zone, valid_from=vf * 1000 if vf else None,
                      valid_until=vu * 1000 if vu else None, signed=True), False


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


def load_verifiers(cfg) -> list:
    """The verifiers a gate's config asks for (none when no keys are configured)."""
    out = []
    if cfg.signing.public_keys:
        out.append(SignedTicketVerifier([load_public_key(p) for p in cfg.signing.public_keys]))
    if cfg.pretix.public_key:
        out.append(PretixVerifier(load_public_key(cfg.pretix.public_key), cfg.pretix.items,
                                  cfg.pretix.subevents, cfg.pretix.zones))
    return out
