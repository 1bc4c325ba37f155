"""Staff cards and venue control messages: signed codes for the door team.

A staff card is a code like a GT1 ticket, with its own prefix and its own key
(`[signing] staff_keys`), so a ticket key can never make one:

    GS1: + Base45(payload + signature)     a card, scanned at a gate
    GC1: + Base45(payload + signature)     a venue control message (MQTT)

    payload = 0x01                       format version
              key id      4 bytes        first bytes of SHA-256(raw public key)
              name        1-byte length + UTF-8   who holds the card / who sent it
              action      1-byte length + ASCII   one of ACTIONS (cards) or VENUE_ACTIONS
              issued      4 bytes BE     unix seconds
              valid_until 4 bytes BE     unix seconds, 0 = none
    signature = Ed25519(payload), 64 bytes

A code with a staff prefix that does not verify, under a key the gate does
not hold, or with an unknown action, is `forged`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.gt1 import _lp, b45encode, open_signed
from gate.boxoffice.keys import key_id

CARD, CONTROL = "GS1:", "GC1:"
VERSION = 1
# What a card does when scanned: switch the gate's mode, or clear its out-of-order latch.
ACTIONS = ("entry", "exit", "info", "test", "clear")
# What a venue control message does: every gate and the house to live (rehearsal uses
# are cleared) or to rehearsal.
VENUE_ACTIONS = ("live", "test")
MAX_CODE = 400      # a longer code is not one of ours; never decoded


@dataclass(frozen=True)
class StaffCode:
    name: str
    action: str
    issued: int          # unix seconds
    valid_until: int     # unix seconds, 0 = none
    kid: bytes = b""


def sign(priv: Ed25519PrivateKey, prefix: str, name: str, action: str, issued: int, valid_until: int = 0) -> str:
    allowed = ACTIONS if prefix == CARD else VENUE_ACTIONS
    if action not in allowed:
        raise ValueError(f"action must be one of {', '.join(allowed)}")
    if not name.strip():
        raise ValueError("a staff code needs a name")
    payload = (bytes([VERSION]) + key_id(priv.public_key()) + _lp(name) + _lp(action)
               + struct.pack(">II", issued, valid_until))
    return prefix + b45encode(payload + priv.sign(payload))


class StaffVerifier:
    """Checks staff codes against the staff public keys a gate or the house holds."""

    def __init__(self, public_keys=()):
        self.keys = {key_id(k): k for k in public_keys}

    @staticmethod
    def claims(text: str) -> bool:
        return text.startswith(CARD) or text.startswith(CONTROL)

    def verify(self, text: str, prefix: str = CARD, now_s: Optional[int] = None) -> Optional[StaffCode]:
        """The staff code, or None for anything forged, malformed, expired or of the other kind."""
        if len(text) > MAX_CODE or not text.startswith(prefix):
            return None
        opened = open_signed(text[len(prefix):], self.keys, 2)
        if opened is None:
            return None
        fields, issued, until, kid = opened
        name, action = fields
        if action not in (ACTIONS if prefix == CARD else VENUE_ACTIONS):
            return None
        if until and now_s is not None and now_s > until:
            return None
        return StaffCode(name, action, issued, until, kid)


MAX_CONTROL_BYTES = 512
CLOCK_SKEW_S = 300   # a control message stamped further ahead than this is refused


def read_control(payload: bytes, verifier: StaffVerifier, after_s: int, now_s: int) -> Optional[StaffCode]:
    """A venue control message from the (hostile) network, or None.

    It must be short ASCII, signed under a staff key, and newer than the last one
    applied (`after_s`): a recorded message replayed later changes nothing."""
    if not isinstance(payload, (bytes, bytearray)) or not 0 < len(payload) <= MAX_CONTROL_BYTES:
        return None
    try:
        text = bytes(payload).decode("ascii")
    except UnicodeDecodeError:
        return None
    code = verifier.verify(text, CONTROL, now_s)
    if code is None or code.issued <= after_s or code.issued > now_s + CLOCK_SKEW_S:
        return None
    return code
