"""Publishing signed ticket lists: the house, the box office (`gate tickets import --publish`),
and anything else that holds a `list_signing_key` (the pretix sync).

A publisher is a *series*: a random id made once, plus a counter, both kept in
`<storage dir>/list-publisher.json` and advanced (under a file lock, written
and synced) *before* a list leaves. Gates order lists of one series by that
counter alone, so a publisher's wrong clock never matters within its series;
a publisher that loses the file simply starts a new series (see
gate/boxoffice/lists.py: `judge`).

    pub = ListPublisher.from_config(cfg, role="boxoffice")
    payload = pub.pack(tickets, revoked)          # signed, encrypted, next seq
    pub.publish(payload)                          # retained, QoS 1, waits for the PUBACK (MQTT v5: refusals heard)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from pathlib import Path
from typing import Iterable, Optional

from gate.boxoffice.keys import load_private_key, load_secret
from gate.boxoffice.lists import MAX_SEQ, pack_list, resign
from gate.boxoffice.revokedcards import RevokedCards
from gate.core.errors import ConfigError, GateError
from gate.core.events import Ticket

STATE_FILE = "list-publisher.json"


class ListPublisher:
    """One publisher's series: signs lists with consecutive sequence numbers."""

    def __init__(self, cfg, signing_key, secret: bytes, state_dir, role: str = "boxoffice"):
        self.cfg = cfg
        self.venue = cfg.venue
        self.key = signing_key
        self.secret = secret
        self.state = Path(state_dir) / STATE_FILE
        self.role = re.sub(r"[^A-Za-z0-9_-]", "", role)[:40] or "publisher"
        self.last: tuple[str, int] = ("", 0)   # (series, seq) of the last list packed

    @classmethod
    def from_config(cls, cfg, role: str = "boxoffice") -> "ListPublisher":
        """From `[signing] list_signing_key`, `[signing] venue_secret` and `[storage] dir`."""
        s = cfg.signing
        if not s.list_signing_key:
            raise ConfigError(cfg.path, "signing.list_signing_key", 0,
                              "needed to publish ticket lists (gate keys new --out DIR --name boxoffice)")
        if not s.venue_secret:
            raise ConfigError(cfg.path, "signing.venue_secret", 0,
                              "needed to publish ticket lists (gate keys new --secret --out DIR --name venue)")
        try:
            key, secret = load_private_key(s.list_signing_key), load_secret(s.venue_secret)
        except (OSError, ValueError) as exc:
            raise ConfigError(cfg.path, "signing", 0, str(exc)) from None
        return cls(cfg, key, secret, cfg.storage.dir, role)

    def next_seq(self) -> tuple[str, int]:
        """Advance and persist this publisher's counter; returns (series, seq)."""
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)   # two publishers on one machine share the series safely
            try:
                st = json.loads(self.state.read_text())
                series, seq = str(st["series"]), int(st["seq"])
            except FileNotFoundError:
                series, seq = f"{self.role}-{secrets.token_hex(4)}", 0
            except (ValueError, KeyError, TypeError):
                raise GateError(f"{self.state}: unreadable; move it away to start a new list series") from None
            seq += 1
            if seq >= MAX_SEQ:
                raise GateError(f"{self.state}: sequence exhausted; move it away to start a new series")
            tmp = self.state.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump({"series": series, "seq": seq}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state)
        return series, seq

    @property
    def revoked_cards(self) -> RevokedCards:
        """The staff cards this publisher has revoked (or heard revoked): every list it packs carries them."""
        return RevokedCards(self.state.parent)

    def pack(self, tickets: Iterable[Ticket], revoked: Iterable[str] = (),
             issued_ms: Optional[int] = None, pretix: Optional[str] = None) -> bytes:
        """The next list of this series, signed and encrypted (see `pack_list`)."""
        staff = self.revoked_cards.entries()
        series, seq = self.next_seq()
        self.last = (series, seq)
        return pack_list(tickets, revoked, signing_key=self.key, secret=self.secret, venue=self.venue,
                         series=series, seq=seq, issued_ms=issued_ms, pretix=pretix, staff_revoked=staff)

    def repack(self, inner: dict, staff_revoked) -> bytes:
        """A verified list's content as the next list of this series, carrying `staff_revoked` (see `resign`)."""
        series, seq = self.next_seq()
        self.last = (series, seq)
        return resign(inner, signing_key=self.key, series=series, seq=seq, staff_revoked=staff_revoked)

    def publish(self, payload: bytes, timeout: float = 30.0, session=None) -> None:
        """Publish retained (QoS 1) and wait for the broker's PUBACK; raises BusError/PublishRefused, in
        words, unless the broker took it. Through `session` (an open gate.bus.publisher.BusSession), or
        a short-lived MQTT v5 connection of its own: its own client id, nothing kept (see there)."""
        from gate.bus import topics
        from gate.bus.publisher import BusSession, session_id
        if session is not None:
            return session.publish(topics.tickets(self.venue), payload, retain=True, timeout=timeout)
        with BusSession(self.cfg.mqtt, session_id(self.role, self.venue)) as bus:
            bus.publish(topics.tickets(self.venue), payload, retain=True, timeout=timeout)
