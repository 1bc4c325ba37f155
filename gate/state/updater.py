"""Applies signed ticket lists that arrive over MQTT to this gate's store, off the scan loop.

The link hands over every payload on the tickets topic; only the newest
waiting one is kept. On the updater's own thread and its own SQLite connection
a list is verified (signature by one of `[signing] list_keys`, this venue), put
in order against what the gate has (gate/boxoffice/lists.py: `judge`), then
decoded row by row straight into one transaction: the scan loop keeps reading
the old list until the commit, and never waits for it (its writes go to
another file, see gate/state/tickets.py). The staff cards a list revokes are in force
from the moment it is verified (ordered or not: a revocation only takes away), and stay so whichever list comes next
(until the cards expire). Anything else is ignored, counted by kind,
logged at WARNING and reported in the gate's health (`ticket_lists`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Callable, Optional

from gate.boxoffice.listguard import ListGuard
from gate.boxoffice.lists import code_key, judge, read_body, verify_list
from gate.boxoffice.refusals import list_level
from gate.core.clock import clock_synchronised, now_ms
from gate.core.errors import PayloadError
from gate.core.worker import LatestOnly
from gate.state.diskspace import is_full, is_readonly, storage_readonly
from gate.state.tickets import TicketStore

log = logging.getLogger(__name__)

QUIET = ("current",)   # the retained list, delivered again on every reconnect: not news


def pretix_meta(raw: Optional[bytes]) -> Optional[str]:
    """The pretix slug and keys a list carries, as JSON text for the store (None: none, or unusable)."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        d = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return text if isinstance(d, dict) else None


class TicketUpdater(LatestOnly):
    """Applies offered ticket lists on its own thread and SQLite connection; only the newest waiting one."""

    def __init__(self, store_path, on_applied: Callable[[int], None] = None, guard: Optional[ListGuard] = None):
        super().__init__("ticket-updater")
        self.store_path = store_path
        self.on_applied = on_applied
        self.guard = guard or ListGuard("")   # no keys: every list is refused, and counted
        self._store: Optional[TicketStore] = None
        self._said: set[str] = set()

    def handle(self, data: bytes) -> None:
        try:
            if self._store is None:
                self._store = TicketStore(self.store_path)
            self.apply(self._store, data)
        except sqlite3.OperationalError as exc:
            ro = storage_readonly(Path(self.store_path).parent)
            if not (is_readonly(exc) or is_full(exc) or ro):
                raise
            # The storage will not take it (read-only, full): the gate keeps deciding from the list it has.
            kind = "storage_readonly" if ro or is_readonly(exc) else "disk_full"
            self.guard.reject(kind, str(exc))
            if kind not in self._said:   # the retained list comes again on every reconnect: said once
                self._said.add(kind)
                log.error("cannot apply a ticket list (%s: %s): this gate keeps the list it has", kind, exc)

    def apply(self, store: TicketStore, data: bytes, guard: Optional[ListGuard] = None,
              now: Optional[int] = None) -> bool:
        """Verify, order and apply one list; True when it was applied."""
        guard = guard or self.guard
        try:
            header, inner = verify_list(data, guard.keys)
            if header.venue != guard.venue:
                raise PayloadError("wrong_venue", f"a list for {header.venue!r}")
            if guard.secret is None:
                raise PayloadError("no_venue_secret", "set [signing] venue_secret to read lists")
        except PayloadError as exc:
            return self._refuse(guard, exc.kind, str(exc))
        now = now_ms() if now is None else now
        if header.staff_revoked:
            # Revocations only ever take away, so any genuine list for this venue adds its own, in order
            # or not (a publisher whose clock is behind still revokes), before the tickets are swapped in.
            store.revoke_staff_cards(header.staff_revoked, now // 1000)
        current = store.list_state()
        why = judge(header, store.seen_seq(header.series), current, now, clock_synchronised())
        if why in QUIET:
            log.debug("ticket list %s/%d again: already applied", header.series, header.seq)
            return False
        if why:
            return self._refuse(guard, why, f"list {header.series}/{header.seq} issued {header.issued}; "
                                            f"this gate has {current.get('series')}/{current.get('seq')}")
        revoked: list[str] = []
        meta = {"list_series": header.series, "list_seq": header.seq, "list_issued": header.issued,
                "list_effective": min(header.issued, now), "list_key": header.key,
                "pretix": pretix_meta(inner.get("pretix"))}
        t0 = time.monotonic()
        try:
            version = store.swap(read_body(inner, guard.secret, revoked), revoked,
                                 code_key(guard.secret, inner["salt"]), meta=meta)
        except PayloadError as exc:
            return self._refuse(guard, exc.kind, str(exc))
        except sqlite3.IntegrityError as exc:
            return self._refuse(guard, "duplicate", str(exc))
        store.note_seen(header.series, header.seq)
        with guard._lock:
            guard.applied = {"series": header.series, "seq": header.seq, "issued": header.issued,
                             "key": header.key, "tickets": header.tickets, "revoked": header.revoked,
                             "staff_revoked": len(header.staff_revoked)}
        log.info("ticket list %s/%d applied in %.2f s: %d tickets, %d revoked, %d staff cards revoked "
                 "(data version %d)", header.series, header.seq, time.monotonic() - t0, header.tickets,
                 header.revoked, len(header.staff_revoked), version)
        if self.on_applied:
            self.on_applied(version)
        return True

    @staticmethod
    def _refuse(guard: ListGuard, kind: str, detail: str) -> bool:
        guard.reject(kind, detail)
        # An older genuine list is stale, not hostile (INFO); unsigned, forged, malformed: WARNING.
        log.log(list_level(kind), "ignoring a ticket list (%s): %s", kind, detail)
        return False

    def close(self):
        self.stop()
        if self._store is not None and not self.alive:
            self._store.close()
