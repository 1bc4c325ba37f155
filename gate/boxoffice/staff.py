"""Staff cards and venue control messages: signed codes for the door team.

Both use the GT1 framing (gate/boxoffice/gt1.py: `seal`, `open_signed`) with the staff
key (`[signing] staff_keys`), each under its own purpose and the venue
(gate/boxoffice/purpose.py), so a card never opens as a control message nor the other
way round, a ticket key's signature is never a card, and a card from another venue is
refused here:

    GS1: + Base45(payload + signature)     a card, scanned at a gate
        payload = 0x02, key id (4), card id (16 hex), name, action, issued, valid_until
        signature = Ed25519(b"gate staff card v2" 0x00 venue 0x00 + payload)
    GC1: + Base45(payload + signature)     a venue control message (MQTT)
        payload = 0x02, key id (4), name, action, issued, 0
        signature = Ed25519(b"gate venue control v2" 0x00 venue 0x00 + payload)

(strings 1-byte length + UTF-8; times 4 bytes BE unix seconds.)

Every card has an id, to revoke it by (`gate staff revoke`), and a lifetime of at most
MAX_LIFETIME_DAYS: a card without an end, or with a longer one, is refused. A code
with a staff prefix that does not verify, under a key the gate does not hold, for
another venue, with an unknown action, expired, or in format 1 (from before cards
had ids and signatures named their purpose) is `forged`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from gate.boxoffice.gt1 import LEGACY_VERSION, open_signed, seal, signed_format
from gate.boxoffice.keys import keyring
from gate.boxoffice.purpose import STAFF_CARD, VENUE_CONTROL
from gate.boxoffice.revokedcards import CARD_ID_RE, MAX_LIFETIME_DAYS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

CARD, CONTROL = "GS1:", "GC1:"
# What a card does when scanned: switch the gate's mode, or clear its out-of-order latch.
ACTIONS = ("entry", "exit", "info", "test", "clear")
# What a venue control message does: every gate and the house to live (rehearsal uses
# are cleared) or to rehearsal.
VENUE_ACTIONS = ("live", "test")
MAX_CODE = 400      # a longer code is not one of ours; never decoded
DEFAULT_LIFETIME_DAYS = 30


@dataclass(frozen=True)
class StaffCode:
    name: str
    action: str
    issued: int          # unix seconds
    valid_until: int     # unix seconds (0 for a control message)
    kid: bytes = b""
    card_id: str = ""    # a card's id (16 hex digits); "" for a control message


def new_card_id() -> str:
    return secrets.token_hex(8)


def sign_card(priv: Ed25519PrivateKey, venue: str, name: str, action: str, issued: int, valid_until: int,
              card_id: Optional[str] = None) -> str:
    """A staff card for `venue` (GS1: text). Raises ValueError for an unknown action, an empty name,
    or a lifetime that is missing or longer than MAX_LIFETIME_DAYS."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    if not name.strip():
        raise ValueError("a staff card needs a name")
    if not 0 < valid_until - issued <= MAX_LIFETIME_DAYS * 86400:
        raise ValueError(f"a staff card is valid for 1 second to {MAX_LIFETIME_DAYS} days from its issue")
    card_id = card_id or new_card_id()
    if not CARD_ID_RE.match(card_id):
        raise ValueError("a card id is 16 hex digits")
    return CARD + seal(priv, STAFF_CARD, (card_id, name, action), issued, valid_until, venue)


def sign_control(priv: Ed25519PrivateKey, venue: str, name: str, action: str, issued: int) -> str:
    """A venue control message for `venue` (GC1: text): every gate and the house to `live` or `test`."""
    if action not in VENUE_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(VENUE_ACTIONS)}")
    if not name.strip():
        raise ValueError("a control message needs a name")
    return CONTROL + seal(priv, VENUE_CONTROL, (name, action), issued, 0, venue)


class StaffVerifier:
    """Checks staff codes against the staff public keys a gate or the house holds, for its venue."""

    def __init__(self, public_keys=(), venue: str = ""):
        self.keys = keyring(public_keys)
        self.venue = venue
        self.legacy = {CARD: 0, CONTROL: 0}   # format-1 codes seen (refused), by kind

    @staticmethod
    def claims(text: str) -> bool:
        return text.startswith(CARD) or text.startswith(CONTROL)

    def verify(self, text: str, prefix: str = CARD, now_s: Optional[int] = None) -> Optional[StaffCode]:
        """The card (prefix CARD) or control message (CONTROL), or None for anything forged,
        malformed, expired, for another venue or of the other kind."""
        if len(text) > MAX_CODE or not text.startswith(prefix) or not self.venue:
            return None
        body = text[len(prefix):]
        if prefix == CARD:
            opened = open_signed(body, self.keys, 3, STAFF_CARD, self.venue)
        else:
            opened = open_signed(body, self.keys, 2, VENUE_CONTROL, self.venue)
        if opened is None:
            if signed_format(body) == LEGACY_VERSION:
                self._legacy(prefix)
            return None
        fields, issued, until, kid = opened
        if prefix == CARD:
            card_id, name, action = fields
            if (action not in ACTIONS or not CARD_ID_RE.match(card_id)
                    or not 0 < until - issued <= MAX_LIFETIME_DAYS * 86400):
                return None
            if now_s is not None and now_s > until:
                return None
            return StaffCode(name, action, issued, until, kid, card_id)
        name, action = fields
        if action not in VENUE_ACTIONS or until:
            return None
        return StaffCode(name, action, issued, 0, kid)

    def _legacy(self, prefix: str) -> None:
        self.legacy[prefix] += 1
        if self.legacy[prefix] % 100 == 1:   # the first, then every 100th: a card held to the camera repeats
            what, how = (("staff card", "re-issue it with `gate staff issue`") if prefix == CARD else
                         ("venue control message", "send it again with `gate venue live|test`"))
            log.warning("refused a %s in the old format (signed before signatures named their purpose and "
                        "venue): %s", what, how)


MAX_CONTROL_BYTES = 512
CLOCK_SKEW_S = 300   # a control message stamped further ahead than this is refused


def read_control(payload: bytes, verifier: StaffVerifier, after_s: int, now_s: int) -> Optional[StaffCode]:
    """A venue control message from the (hostile) network, or None.

    It must be short ASCII, signed under a staff key for this venue, and newer than the
    last one applied (`after_s`): a recorded message replayed later changes nothing."""
    code = open_control(payload, verifier)
    if code is None or code.issued <= after_s or code.issued > now_s + CLOCK_SKEW_S:
        return None
    return code


def open_control(payload: bytes, verifier: StaffVerifier) -> Optional[StaffCode]:
    """A genuinely signed control message for this venue, whatever its time, or None."""
    if not isinstance(payload, (bytes, bytearray)) or not 0 < len(payload) <= MAX_CONTROL_BYTES:
        return None
    try:
        text = bytes(payload).decode("ascii")
    except UnicodeDecodeError:
        return None
    return verifier.verify(text, CONTROL)
