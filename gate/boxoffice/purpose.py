"""What a signature is for: every Ed25519 signature the project makes covers a purpose
string, and the venue where there is one, inside the signed bytes.

    signed bytes = b"gate " + purpose + 0x00 [+ venue + 0x00] + payload

as TLS 1.3's CertificateVerify and RFC 8032's Ed25519ctx do it: a signature made for
one purpose is over bytes that no other purpose ever signs, so a valid signature of
one kind never verifies as another, whatever the payloads look like and even when
one key signs more than one kind. The contexts are prefix-free (each purpose ends
at its 0x00, and no purpose contains one), and none starts with 0x01, the first byte
of every payload signed before purposes existed (GT1/GS1/GC1 format 1), so no old
signature verifies under a purpose either.

The ticket list's context is the prefix lists have always been signed with
(gate/boxoffice/lists.py): it already named its purpose, and its venue is inside the
signed map (checked by every receiver), so gates in the field keep reading new lists.
A ticket names no venue: its event is what a gate admits it for.

pretix's `pretix_sig1` is pretix's format and is verified as pretix defines it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gate.boxoffice.ed25519 import BadSignature, verify_key
from gate.core.ids import is_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TICKET = "ticket v2"                  # a GT1 ticket code (gate/boxoffice/gt1.py)
STAFF_CARD = "staff card v2"          # a GS1 staff card (gate/boxoffice/staff.py); venue-bound
VENUE_CONTROL = "venue control v2"    # a GC1 venue control message; venue-bound
TICKET_LIST = "ticket list v2"        # a signed ticket list; the venue is inside the signed map

PURPOSES = (TICKET, STAFF_CARD, VENUE_CONTROL, TICKET_LIST)
VENUE_BOUND = frozenset({STAFF_CARD, VENUE_CONTROL})


def context(purpose: str, venue: str = "") -> bytes:
    """The bytes that precede the payload in what is signed for `purpose` (at `venue`)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown signing purpose {purpose!r}")
    ctx = b"gate " + purpose.encode() + b"\x00"
    if purpose in VENUE_BOUND:
        if not is_id(venue or ""):
            raise ValueError(f"a {purpose.split(' v')[0]} is signed for a venue: 1-64 of [A-Za-z0-9_-]")
        ctx += venue.encode() + b"\x00"
    return ctx


def sign(priv: Ed25519PrivateKey, purpose: str, payload: bytes, venue: str = "") -> bytes:
    """An Ed25519 signature of `payload` for `purpose` (and `venue`), 64 bytes."""
    return priv.sign(context(purpose, venue) + payload)


def verifies(pub, sig: bytes, purpose: str, payload: bytes, venue: str = "") -> bool:
    """Whether `sig` is `pub`'s signature of `payload` for exactly this purpose and venue (`pub`: a VerifyKey,
    gate/boxoffice/ed25519.py, or a `cryptography` key)."""
    try:
        verify_key(pub).verify(sig, context(purpose, venue) + payload)
    except (BadSignature, ValueError):
        return False
    return True
