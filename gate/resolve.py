"""From a read code to what it is: a listed ticket, a signed one, a forgery,
or nothing we know. No rules are applied here (they live in decide.py)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from gate.boxoffice.gt1 import SignedTicketVerifier
from gate.boxoffice.keys import load_public_key
from gate.boxoffice.pretix import PretixVerifier, load_pretix_key_file
from gate.boxoffice.staff import CARD, StaffCode, StaffVerifier
from gate.boxoffice.ticketfile import parse_time
from gate.core.events import Code
from gate.decide import Resolution

log = logging.getLogger(__name__)


def code_ref(raw: bytes, key: bytes) -> str:
    """How a scan event names a code that is not a ticket we know: a keyed hash, never
    the code. Keyed (with the store's own random key), because the code may still be a
    valid ticket elsewhere, and a short one could be recovered from a plain hash by
    trying every value."""
    return "h:" + hmac.new(key, raw, hashlib.sha256).hexdigest()[:16]


@dataclass
class RejectCounts:
    oversized: int = 0
    binary: int = 0
    control: int = 0
    kinds: dict = field(default_factory=dict)


class Resolver:
    """Looks a code up in the ticket store, or verifies it as a signed ticket."""

    def __init__(self, store, verifiers=(), max_payload: int = 1024):
        self.store = store
        verifiers = list(verifiers)
        # Staff codes are checked apart: with no staff key configured every one of them is forged.
        self.staff = next((v for v in verifiers if isinstance(v, StaffVerifier)), StaffVerifier())
        verifiers = [v for v in verifiers if not isinstance(v, StaffVerifier)]
        self.verifiers = verifiers   # objects with claims(text) and verify(text), from the config
        # No pretix key in the config: the ticket list may still bring some from the house.
        listed = [] if any(isinstance(v, PretixVerifier) for v in self.verifiers) else [PretixVerifier([], {}, {}, {})]
        self._checks = self.verifiers + listed
        for v in self._checks:
            if hasattr(v, "bind"):
                v.bind(store)
        self.max_payload = max_payload
        self.rejects = RejectCounts()

    def ref(self, raw: bytes) -> str:
        return code_ref(raw, self.store.ref_key)

    def staff_card(self, code: Code) -> Optional[StaffCode]:
        """The verified staff card this code is, or None (not a staff code, or one that does not
        verify: resolve() then calls it forged). Counts nothing: resolve() counts rejects."""
        if len(code.raw) > self.max_payload:
            return None
        try:
            text = code.raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not self.staff.claims(text) or any(ord(c) < 32 or ord(c) == 127 for c in text):
            return None
        card, revoked = self._card(text)
        if revoked:
            log.warning("staff card %s (%s, %s) is revoked: refused", revoked.card_id, revoked.name, revoked.action)
        return card

    def _card(self, text: str) -> tuple[Optional[StaffCode], Optional[StaffCode]]:
        """(the card, if it verifies, has not expired and is not revoked; the card, if it is revoked)."""
        card = self.staff.verify(text, CARD, int(time.time()))
        if card is not None and self.store.staff_card_revoked(card.card_id):
            return None, card
        return card, None

    def resolve(self, code: Code) -> Resolution:
        raw = code.raw
        if len(raw) > self.max_payload:
            self.rejects.oversized += 1
            return Resolution(None, ref=self.ref(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: a Latin-1 QR code may still match a listed code by its text.
            listed = self.store.by_code(code.text) if code.text and "\\x" not in code.text else None
            if listed is not None:
                return Resolution(listed, ref=listed.ticket_id, revoked=self.store.is_revoked(listed.ticket_id))
            self.rejects.binary += 1
            return Resolution(None, ref=self.ref(raw))
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            self.rejects.control += 1
            return Resolution(None, ref=self.ref(raw))
        if self.staff.claims(text):
            card, _ = self._card(text)
            return Resolution(None, forged=card is None, ref=self.ref(raw), staff=card)
        for v in self._checks:
            if v.claims(text):
                ticket, forged = v.verify(text)
                if forged or ticket is None:
                    return Resolution(None, forged=True, ref=self.ref(raw))
                listed = self.store.by_id(ticket.ticket_id)
                if listed is not None and listed.event == ticket.event:
                    # The list may know the holder, seat and tags of a signed ticket.
                    ticket.holder, ticket.seat, ticket.tags = listed.holder, listed.seat, listed.tags
                    ticket.patron, ticket.status = listed.patron, listed.status
                return Resolution(ticket, ref=ticket.ticket_id, revoked=self._revoked(ticket.ticket_id, text))
        ticket = self.store.by_code(text)
        if ticket is None:
            return Resolution(None, ref=self.ref(raw))
        return Resolution(ticket, ref=ticket.ticket_id, revoked=self._revoked(ticket.ticket_id, text))

    def _revoked(self, ticket_id: str, text: str) -> bool:
        # A revocation list names tickets by id, or (pretix's) by the full secret.
        return self.store.is_revoked(ticket_id) or self.store.is_revoked(text)


def load_verifiers(cfg) -> list:
    """The verifiers a gate's config asks for (none when no keys are configured)."""
    out: list[SignedTicketVerifier | StaffVerifier | PretixVerifier] = []
    if cfg.signing.ticket_keys:
        legacy = parse_time(cfg.signing.legacy_tickets_until) // 1000 if cfg.signing.legacy_tickets_until else 0
        out.append(SignedTicketVerifier([load_public_key(p) for p in cfg.signing.ticket_keys], legacy))
    if cfg.signing.staff_keys:
        out.append(StaffVerifier([load_public_key(p) for p in cfg.signing.staff_keys], cfg.venue))
    if cfg.pretix.public_keys or cfg.pretix.event:
        out.append(PretixVerifier([load_pretix_key_file(p) for p in cfg.pretix.public_keys], cfg.pretix.items,
                                  cfg.pretix.subevents, cfg.pretix.zones, cfg.pretix.event))
    return out
