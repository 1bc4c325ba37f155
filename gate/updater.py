"""Applies ticket lists that arrive over MQTT to this gate's store, off the scan loop."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from gate.boxoffice.lists import unpack_list
from gate.errors import PayloadError
from gate.tickets import TicketStore

log = logging.getLogger("gate.tickets")


class TicketUpdater:
    """Applies offered ticket lists on its own thread; only the newest waiting one."""

    def __init__(self, store_path, on_applied: Callable[[int], None] = None):
        self.store_path = store_path
        self.on_applied = on_applied
        self._slot: Optional[bytes] = None
        self._cv = threading.Condition()
        self._stop = False
        self.rejected = 0
        self._thread = threading.Thread(target=self._run, name="ticket-updater", daemon=True)

    def start(self):
        self._thread.start()

    def offer(self, payload: bytes) -> None:
        with self._cv:
            self._slot = payload
            self._cv.notify()

    def _run(self):
        store = TicketStore(self.store_path)
        try:
            while True:
                with self._cv:
                    while self._slot is None and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    data, self._slot = self._slot, None
                self.apply(store, data)
        finally:
            store.close()

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
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

