"""The house's side of the ticket list: holder names for the arrivals feed and the
attendance log, taken only from a list signed by a key the house trusts
(`[signing] list_keys`, plus the public half of its own `list_signing_key`), and
the lists it turned away, for the dashboard and `/api/house` (the gates' own count
arrives in their health: gate/bus/messages.py)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from gate.boxoffice.ed25519 import verify_key
from gate.boxoffice.keys import load_private_key, load_public_key, load_secret
from gate.boxoffice.listguard import ListGuard
from gate.boxoffice.lists import judge, read_body, row_ticket, verify_list
from gate.boxoffice.refusals import list_level
from gate.boxoffice.revokedcards import RevokedCards
from gate.core.clock import clock_synchronised, now_ms
from gate.core.errors import GateError, PayloadError
from gate.core.events import Ticket

log = logging.getLogger(__name__)


def guard_from_config(cfg) -> ListGuard:
    s = cfg.signing
    keys = [load_public_key(p) for p in s.list_keys]
    if s.list_signing_key:
        keys.append(verify_key(load_private_key(s.list_signing_key)))
    return ListGuard(cfg.venue, keys, load_secret(s.venue_secret) if s.venue_secret else None)


STATE_FILE = "house-lists.json"


class HouseLists:
    """Verifies and orders lists as the gates do; what it applied is kept on disk, so an old
    list replayed while the house restarts cannot roll the names back either."""

    def __init__(self, cfg):
        self.guard = guard_from_config(cfg)
        self.revoked_cards = RevokedCards(cfg.storage.dir)   # the house's own lists carry them on
        self.state_path = Path(cfg.storage.dir) / STATE_FILE
        self.current: dict = {}
        self.seen: dict[str, int] = {}
        try:
            st = json.loads(self.state_path.read_text())
            cur, seen = st["current"], st["seen"]
            if cur and not all(type(cur.get(k)) is int for k in ("seq", "issued", "effective")):
                raise ValueError
            self.current = {"series": str(cur["series"]), **{k: cur[k] for k in ("seq", "issued", "effective")}} \
                if cur else {}
            self.seen = {str(k): int(v) for k, v in seen.items()}
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s unreadable: the next signed list is taken as the first", self.state_path)

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"current": self.current, "seen": self.seen}))
        os.replace(tmp, self.state_path)

    def read(self, payload: bytes) -> Optional[list[Ticket]]:
        """The tickets (without codes) of a newer list signed by a trusted key, or None."""
        g = self.guard
        try:
            h, inner = verify_list(payload, g.keys)
            if h.venue != g.venue:
                raise PayloadError("wrong_venue", h.venue)
            if g.secret is None:
                raise PayloadError("no_venue_secret", "set [signing] venue_secret to read names from lists")
            self._keep_revocations(h)
            now = now_ms()
            why = judge(h, self.seen.get(h.series), self.current, now, clock_synchronised())
            if why == "current":
                return None
            if why:
                raise PayloadError(why, f"list {h.series}/{h.seq}")
            rows = [row_ticket(r) for r in read_body(inner, g.secret, [])]
        except PayloadError as exc:
            g.reject(exc.kind, str(exc))
            log.log(list_level(exc.kind), "ignoring a ticket list (%s): %s", exc.kind, exc)   # stale: INFO
            return None
        self.seen[h.series] = h.seq
        self.current = {"series": h.series, "seq": h.seq, "issued": h.issued, "effective": min(h.issued, now)}
        self._save()
        with g._lock:
            g.applied = {"series": h.series, "seq": h.seq, "issued": h.issued, "key": h.key, "tickets": h.tickets}
        return rows

    def _keep_revocations(self, h) -> None:
        """A card another publisher (the box office) revoked stays revoked in the lists the house publishes;
        any genuine list for this venue counts, in order or not (a revocation only takes away)."""
        if not h.staff_revoked:
            return
        try:
            self.revoked_cards.add(h.staff_revoked)
        except GateError as exc:
            log.error("cannot keep the staff cards list %s/%d revokes: %s", h.series, h.seq, exc)

    def report(self) -> dict:
        return self.guard.report()
