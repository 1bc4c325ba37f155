"""Revoked staff cards: as a publisher keeps them, and as a ticket list carries them.

`gate staff revoke CARD_ID` adds a card to `<storage dir>/staff-revoked.json`; every
list the publisher packs from then on carries all of them (gate/boxoffice/publish.py),
and so does the house's, which also adds every revocation it reads in another
publisher's list. A revocation is kept until the card it names has expired for sure
(MAX_LIFETIME_DAYS after it was made: no card lives longer), then forgotten, so the
set stays small however long a venue runs.

In a list (the signed header's `staff`, gate/boxoffice/lists.py): 12 bytes a card,
its id (8 bytes) and the revocation's end (4 bytes BE, unix seconds).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Iterable, Optional

from gate.core.errors import GateError, PayloadError

STATE_FILE = "staff-revoked.json"
MAX_LIFETIME_DAYS = 400          # the longest a staff card lives (gate/boxoffice/staff.py checks it too)
MAX_STAFF_REVOKED = 10_000       # revoked staff cards a list carries
ENTRY = 12
CARD_ID_RE = re.compile(r"^[0-9a-f]{16}$")


def pack_staff(entries: Iterable[tuple[str, int]]) -> bytes:
    """Revoked staff cards [(card id, until)] as a list's `staff` bytes; ValueError on a bad entry."""
    out = bytearray()
    for card_id, until in sorted(set(entries)):
        if not (type(card_id) is str and CARD_ID_RE.match(card_id) and type(until) is int and 0 < until < 2 ** 32):
            raise ValueError(f"revoked staff card {card_id!r} until {until!r}: not 16 hex digits and a time")
        out += bytes.fromhex(card_id) + until.to_bytes(4, "big")
    if len(out) > MAX_STAFF_REVOKED * ENTRY:
        raise ValueError(f"a list carries at most {MAX_STAFF_REVOKED:,} revoked staff cards")
    return bytes(out)


def unpack_staff(raw) -> tuple:
    """A list's `staff` bytes (None: the list has none) as ((card id, until), ...); PayloadError when bad."""
    if raw is None:
        return ()
    if type(raw) is not bytes or len(raw) % ENTRY or len(raw) > MAX_STAFF_REVOKED * ENTRY:
        raise PayloadError("bad_field", "staff")
    return tuple((raw[i:i + 8].hex(), int.from_bytes(raw[i + 8:i + ENTRY], "big")) for i in range(0, len(raw), ENTRY))


def revocation_end(now_s: int) -> int:
    """Until when a revocation made now must be kept."""
    return now_s + MAX_LIFETIME_DAYS * 86400


class RevokedCards:
    """A publisher's revoked staff cards, on disk (written whole, atomically, under a lock)."""

    def __init__(self, state_dir):
        self.path = Path(state_dir) / STATE_FILE

    def entries(self, now_s: Optional[int] = None) -> list[tuple[str, int]]:
        """The revocations still in force [(card id, until)], newest end last."""
        now_s = int(time.time()) if now_s is None else now_s
        return sorted(((c, u) for c, u in self._read().items() if u >= now_s), key=lambda e: (e[1], e[0]))

    def add(self, entries: Iterable[tuple[str, int]], now_s: Optional[int] = None) -> int:
        """Add revocations (an existing one keeps the later end); returns how many were new."""
        entries = [(c, u) for c, u in entries]
        pack_staff(entries)   # refuses a bad id or time before anything is written
        now_s = int(time.time()) if now_s is None else now_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)   # the house and `gate staff revoke` may share the directory
            cards = {c: u for c, u in self._read().items() if u >= now_s}
            new = 0
            for c, u in entries:
                if u < now_s:
                    continue
                new += c not in cards
                cards[c] = max(u, cards.get(c, 0))
            if len(cards) > MAX_STAFF_REVOKED:
                raise GateError(f"{self.path}: more than {MAX_STAFF_REVOKED:,} staff cards revoked and not yet "
                                "expired; issue cards with shorter lifetimes")
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump({"cards": cards}, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        return new

    def _read(self) -> dict[str, int]:
        try:
            st = json.loads(self.path.read_text())
            cards = st["cards"]
            return {str(c): int(u) for c, u in cards.items() if CARD_ID_RE.match(str(c))}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise GateError(f"{self.path}: unreadable; restore it from a backup (it lists the revoked staff "
                            "cards), or move it away and revoke the lost cards again") from None
