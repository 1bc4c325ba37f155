"""The house's alerts: things a person should know about, on `gate/<venue>/house/alerts`.

DESIGN.md ("Alerts and door flow"): each alert is JSON `{"kind", "level", "event",
"gate", "text", "tags", "ts"}`, QoS 1, not retained; kinds such as `sync` (pretix),
`door`, `capacity`; levels `info`, `warn`, `critical`. An alert is raised under a key
(say `sync:held`) and stays active until cleared; raising it again with the same
level and text publishes nothing (a sync that fails every minute is one alert, not
sixty), and clearing it publishes one `info` alert saying so. The active ones are in
`/api/house` (`alerts`) and on the dashboard.

Only the pretix link raises alerts yet; door flow and capacity alerts are meant to
use this same class.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Optional

from gate.bus import topics

log = logging.getLogger(__name__)

LEVELS = ("info", "warn", "critical")
MAX_ACTIVE = 256        # keys are the house's own; the cap guards against a bug that makes one per message
MAX_TEXT = 500


def alerts_topic(venue: str) -> str:
    return topics.house_alerts(venue)


class Alerts:
    """Active alerts by key; `publish(topic, payload, retain)` queues a QoS 1 message (the house's bus)."""

    def __init__(self, venue: str, publish: Optional[Callable] = None):
        self.venue = venue
        self.publish = publish
        self._active: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.on_change: Optional[Callable[[], None]] = None   # e.g. push a fresh dashboard view

    def raise_(self, key: str, kind: str, level: str, text: str, *, event: str = "", gate: str = "",
               tags: tuple = ()) -> bool:
        """Raise (or update) the alert `key`; True when it was new or changed (and so was published)."""
        if level not in LEVELS:
            raise ValueError(f"alert level {level!r}")
        text = text[:MAX_TEXT]
        with self._lock:
            old = self._active.get(key)
            if old is not None and (old["level"], old["text"]) == (level, text):
                return False
            if old is None and len(self._active) >= MAX_ACTIVE:
                log.warning("more than %d alerts active: %s not raised", MAX_ACTIVE, key)
                return False
            alert = {"kind": kind, "level": level, "event": event, "gate": gate, "text": text,
                     "tags": list(tags), "ts": int(time.time() * 1000)}
            self._active[key] = {**alert, "key": key, "since": old["since"] if old else alert["ts"]}
        (log.error if level == "critical" else log.warning)("alert (%s, %s): %s", kind, level, text)
        self._send(alert)
        return True

    def clear(self, key: str, text: str = "") -> bool:
        """The condition behind `key` is over: one `info` alert says so. False when it was not active."""
        with self._lock:
            old = self._active.pop(key, None)
        if old is None:
            return False
        said = text or f"resolved: {old['text']}"
        log.info("alert cleared (%s): %s", old["kind"], said)
        self._send({"kind": old["kind"], "level": "info", "event": old["event"], "gate": old["gate"],
                    "text": said[:MAX_TEXT], "tags": old["tags"] + ["resolved"], "ts": int(time.time() * 1000)})
        return True

    def active(self) -> list[dict]:
        """The alerts still standing, oldest first (for /api/house and the dashboard)."""
        with self._lock:
            return sorted((dict(a) for a in self._active.values()), key=lambda a: a["since"])

    def is_active(self, key: str) -> bool:
        with self._lock:
            return key in self._active

    def _send(self, alert: dict) -> None:
        if self.publish is not None:
            try:
                # QoS 1, not retained: paho keeps it while the broker is away and sends it after reconnect.
                self.publish(alerts_topic(self.venue), json.dumps(alert, separators=(",", ":")), False)
            except Exception as exc:   # an alert that cannot go out must not take its raiser down
                log.warning("alert not published: %s", exc)
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.debug("alert on_change hook failed", exc_info=True)
