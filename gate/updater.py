"""Applies ticket lists that arrive over MQTT to this gate's store, off the scan loop."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from gate.boxoffice.lists import unpack_list
from gate.errors import PayloadError
from gate.tickets import TicketStore
from gate.worker import LatestOnly

log = logging.getLogger("gate.tickets")


class TicketUpdater(LatestOnly):
    """Applies offered ticket lists on its own thread and SQLite connection; only the newest waiting one."""

    def __init__(self, store_path, on_applied: Callable[[int], None] = None):
        super().__init__("ticket-updater")
        self.store_path = store_path
        self.on_applied = on_applied
        self.rejected = 0
        self._store: Optional[TicketStore] = None

    def handle(self, data: bytes) -> None:
        if self._store is None:
            self._store = TicketStore(self.store_path)
        self.apply(self._store, data)

    def apply(self, store: TicketStore, data: bytes) -> bool:
        try:
            version, tickets, revoked = unpack_list(data)
        except PayloadError as exc:
            self.rejected += 1
            log.warning("ignoring a malformed ticket list: %s", exc)
            return False
        if version <= store.version:
            log.info("ticket list version %d is not newer than %d: ignored", version, store.version)
            return False
        store.replace_all(tickets, revoked, version)
        log.info("ticket data version %d applied: %d tickets, %d revoked", version, len(tickets), len(revoked))
        if self.on_applied:
            self.on_applied(version)
        return True

    def close(self):
        self.stop()
        if self._store is not None and not self.alive:
            self._store.close()
