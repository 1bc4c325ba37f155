"""What a receiver accepts as a ticket list: the keys that may sign it, the venue secret, the venue,
and the count of what it turned away (a gate's updater and the house's own list check share it)."""

from __future__ import annotations

import threading
from typing import Optional

from gate.boxoffice.keys import keyring, load_public_key, load_secret


class ListGuard:
    """What a gate accepts as a ticket list (keys, venue secret, venue), and the
    count of what it turned away, by reason (read by health from another thread)."""

    def __init__(self, venue: str, public_keys=(), secret: Optional[bytes] = None):
        self.venue = venue
        self.keys = keyring(public_keys)
        self.secret = secret
        self.rejected: dict[str, int] = {}
        self.last_rejected = ""
        self.applied: dict = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> "ListGuard":
        s = cfg.signing
        return cls(cfg.venue, [load_public_key(p) for p in s.list_keys],
                   load_secret(s.venue_secret) if s.venue_secret else None)

    def reject(self, kind: str, detail: str) -> None:
        with self._lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
            self.last_rejected = f"{kind}: {detail}"[:200]

    def report(self) -> dict:
        """For the health topic and the dashboard."""
        with self._lock:
            return {"applied": dict(self.applied), "rejected": dict(self.rejected),
                    "last_rejected": self.last_rejected}
