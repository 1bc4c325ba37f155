"""The gates' ticket list, made from the house's pretix data.

Rows are read from SQLite and handed to the list packer one at a time (a generator),
so memory holds the packed list and the packer's own sets, never a list of Ticket
objects besides. Each row is checked once more as the gates would check it, and a
ticket id or code seen twice is skipped: whatever an older house or a bug left in the
table, the list packs, so a bad row can never stop every later list.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Iterator

from gate.boxoffice.lists import check_row
from gate.boxoffice.pretix import ticket_seed
from gate.core.errors import PayloadError
from gate.core.events import Ticket

log = logging.getLogger(__name__)

NOTES = {"n": "order not paid", "c": "order cancelled", "e": "order expired"}
DUMMY_HASH = bytes(16)
LIST_COLUMNS = ("secret, ticket_id, event, item, holder, seat, email, attention, blocked, order_status, "
                "valid_if_pending, valid_from, valid_until")


class ListRows:
    """One pass over the house's pretix data as gate tickets; `skipped` counts rows left out."""

    def __init__(self, db, slug: str, zones: dict, keys_json: str):
        self.db, self.slug, self.zones, self.keys_json = db, slug, zones, keys_json
        self.skipped = 0

    def tickets(self) -> Iterator[Ticket]:
        blocked = {s for s, in self.db.execute("SELECT secret FROM pretix_blocked WHERE blocked=1")}
        ids, codes = set(), set()
        for (secret, tid, event, item, holder, seat, email, attention, is_blocked, status,
             valid_if_pending, vf, vu) in self.db.execute(f"SELECT {LIST_COLUMNS} FROM pretix_positions ORDER BY id"):
            paid = status == "p" or (status == "n" and valid_if_pending)
            state = "blocked" if (is_blocked or secret in blocked) else "valid"
            note = ""
            if not paid:
                state, note = "revoked", NOTES.get(status, "order not valid")
            t = Ticket(ticket_id=tid, event=event, code=secret, holder=holder or "", seat=seat or "",
                       zone=self.zones.get(str(item), ""), valid_from=vf, valid_until=vu, status=state,
                       tags=("attention",) if attention else (), note=note, patron=email or "",
                       signed=tid.startswith("pretix-"))
            try:
                check_row([t.ticket_id, DUMMY_HASH, t.event, t.holder, t.seat, t.zone, t.valid_from, t.valid_until,
                           t.status, ";".join(t.tags), t.note, t.patron])
            except PayloadError as exc:
                self._skip(tid, str(exc))
                continue
            if tid in ids or secret in codes or tid == secret:
                self._skip(tid, "ticket id or code twice")
                continue
            ids.add(tid)
            codes.add(secret)
            yield t

    def _skip(self, tid: str, why: str) -> None:
        self.skipped += 1
        if self.skipped <= 5:
            log.warning("pretix ticket %s left off the gates' list: %s", tid[:64], why)

    def revoked(self) -> list[str]:
        """pretix revokes secrets; gates revoke ticket ids. A signed secret names its ticket (its seed),
        so the gate refuses it offline; an unsigned one, gone from the list, is unknown there anyway."""
        return sorted({f"pretix-{seed}" for seed in (ticket_seed(s) for s, in
                                                     self.db.execute("SELECT secret FROM pretix_revoked")) if seed})

    def meta(self) -> str:
        try:
            keys = json.loads(self.keys_json or "[]")
        except ValueError:
            keys = []
        return json.dumps({"event": self.slug, "keys": keys})

    def digest(self) -> tuple[str, int]:
        """(digest of the list's content, positions): to publish only when something changed. Read from
        the rows as stored (cheaper than making the tickets twice); the zones map is part of it."""
        h, n = hashlib.sha256(), 0
        for row in self.db.execute(f"SELECT {LIST_COLUMNS} FROM pretix_positions ORDER BY id"):
            h.update(repr(row).encode())
            n += 1
        for row in self.db.execute("SELECT secret, blocked FROM pretix_blocked ORDER BY secret"):
            h.update(repr(row).encode())
        h.update(repr((self.revoked(), self.meta(), sorted(self.zones.items()))).encode())
        return h.hexdigest(), n


def ticket_list(db, slug: str, zones: dict, keys_json: str) -> ListRows:
    return ListRows(db, slug, zones, keys_json)


def build_list(sync, publisher, previous_digest: str = "") -> tuple[bytes, str, int]:
    """(signed ticket list, digest of its content, tickets); b"" when nothing changed since the last."""
    rows = sync.ticket_list()
    digest, n = rows.digest()
    if digest == previous_digest:
        return b"", digest, n
    rows.skipped = 0
    payload = publisher.pack(rows.tickets(), rows.revoked(), pretix=rows.meta())
    return payload, digest, n - rows.skipped
