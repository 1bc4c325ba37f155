"""Telling routine from attack when a signed message is not applied.

A house or gate hears the retained venue control message and ticket list again on every
restart and reconnect: the one it already applied. An older genuine message is stale, not
hostile. Neither is worth a warning. A message that is unsigned, signed by a key this
venue does not trust, altered or malformed is: it is logged at WARNING with its reason and
how many such have come, so an operator can tell an attack from a reconnect.
"""

from __future__ import annotations

import logging
import threading
import time

from gate.boxoffice.gt1 import LEGACY_VERSION, b45decode
from gate.boxoffice.staff import CARD, CLOCK_SKEW_S, CONTROL, MAX_CONTROL_BYTES, StaffVerifier

# Ticket lists ignored for one of these reasons were genuinely signed, only not newer (gate/boxoffice/lists.py
# `judge`): `current` is the retained list again, the others an older one.
LIST_ROUTINE = ("current",)
LIST_STALE = ("replayed", "superseded")
LOG_EVERY_S = 60.0   # a hostile kind is logged when first seen, then at most this often, with its count
OLD_FORMAT = "in the old format"   # counted here; the verifier itself says what to do about it (staff.py)


def list_level(kind: str) -> int:
    """How loud to say that a ticket list was ignored for `kind`."""
    if kind in LIST_ROUTINE:
        return logging.DEBUG
    if kind in LIST_STALE:
        return logging.INFO
    return logging.WARNING


def _forgery(payload, verifier: StaffVerifier) -> str:
    """Why a control message is not genuine, in words (it did not verify)."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > MAX_CONTROL_BYTES:
        return f"malformed (not {MAX_CONTROL_BYTES} bytes of text or less)"
    try:
        text = bytes(payload).decode("ascii")
    except UnicodeDecodeError:
        return "malformed (not ASCII)"
    if text.startswith(CARD):
        return "a staff card sent as a control message"
    if not text.startswith(CONTROL):
        return f"malformed (not a {CONTROL} control message)"
    try:
        blob = b45decode(text[len(CONTROL):])
    except ValueError:
        return "malformed (not Base45)"
    if len(blob) < 5 + 64:
        return "malformed (too short to be signed)"
    if blob[0] == LEGACY_VERSION:
        return OLD_FORMAT
    if bytes(blob[1:5]) not in verifier.keys:
        return f"signed by a key this venue does not trust (key id {bytes(blob[1:5]).hex()}) or unsigned"
    return "its signature does not verify (altered, or signed for another venue or purpose)"


class ControlRefusals:
    """Says why a venue control message was not applied, at a level that fits; counts the hostile ones."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self.counts: dict[str, int] = {}     # forged or malformed ones, by reason
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def refused(self, payload, verifier: StaffVerifier, applied_s: int, now_s: int) -> None:
        """`payload` was not applied (not genuine, or not newer than `applied_s`): log it as it deserves."""
        text = bytes(payload).decode("ascii", "replace") if isinstance(payload, (bytes, bytearray)) else ""
        code = verifier.verify(text, CONTROL) if len(text) <= MAX_CONTROL_BYTES else None
        if code is not None:
            what = f"{code.action} by {code.name}, signed at {code.issued}"
            if code.issued == applied_s:
                self.log.debug("venue control message again (%s): the one in force", what)
            elif code.issued < applied_s:
                self.log.info("an older venue control message (%s) ignored: the one in force was signed at %d",
                              what, applied_s)
            elif code.issued > now_s + CLOCK_SKEW_S:
                self.log.warning("a venue control message (%s) is stamped %d s ahead of this clock: ignored; "
                                 "check this machine's clock (timedatectl) and the sender's",
                                 what, code.issued - now_s)
            return
        why = _forgery(payload, verifier)
        with self._lock:
            n = self.counts[why] = self.counts.get(why, 0) + 1
            now = time.monotonic()
            due = why != OLD_FORMAT and (n == 1 or now - self._logged.get(why, 0.0) >= LOG_EVERY_S)
            if due:
                self._logged[why] = now
        if due:
            self.log.warning("refused a venue control message: %s (%d such so far; %d refused in all)",
                             why, n, sum(self.counts.values()))
