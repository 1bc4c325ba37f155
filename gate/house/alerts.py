"""The house's alerts: things a person should know about, on `gate/<venue>/house/alerts`.

DESIGN.md ("Alerts and door flow"): each alert is JSON `{"kind", "level", "event",
"gate", "text", "tags", "ts"}`, QoS 1, not retained; kinds `arrival`, `capacity`, `flow`,
`door`, `sync` (pretix), `security`; levels `info`, `warn`, `critical`. Two sorts:
- a condition is raised under a key (say `sync:held`) and stays active until cleared; raising
  it again with the same level and text publishes nothing (a sync that fails every minute is
  one alert, not sixty), and clearing it publishes one `info` alert saying so. The active ones
  are in `/api/house` (`alerts`, ranked by level), on the dashboard, and retained for Home
  Assistant's problem sensor (gate/house/watch.py publishes `house/alerts/active`);
- a happening (`notify`: a notable patron came in) is published once; under a key it is
  de-duplicated for DEDUP_MS (a patron who steps out and back is greeted once a night).

Rate-bound so that a busy night does not bury the ones that matter: each level has its own
budget (a token bucket, BUDGET), so a flood of greetings can never use up the room a critical
alert needs. What the budget holds back is counted per kind, shown on the dashboard (which
lists every alert), and said in one summary alert a minute (`tick`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, OrderedDict, deque
from typing import Callable, Optional

from gate.bus import topics
from gate.core.clock import now_ms

log = logging.getLogger(__name__)

LEVELS = ("info", "warn", "critical")
MAX_ACTIVE = 256        # keys are the house's own; the cap guards against a bug that makes one per message
MAX_TEXT = 500
BUDGET = {"info": (12, 12), "warn": (30, 20), "critical": (60, 30)}   # level -> (a minute, burst)
DEDUP_MS = 12 * 3600_000   # a happening under one key is told once in this long
MAX_KEYS = 5000            # happening keys remembered for de-duplication
RECENT = 60                # alerts kept for the dashboard, published or held back
SUMMARY_MS = 60_000        # at most one "held back" summary per kind this often


def alerts_topic(venue: str) -> str:
    return topics.house_alerts(venue)


class Alerts:
    """Active alerts by key; `publish(topic, payload, retain)` queues a QoS 1 message (the house's bus:
    gate/house/build.py hands one in that publishes only while this house is the active one);
    `clock()` gives unix ms (injectable for tests)."""

    def __init__(self, venue: str, publish: Optional[Callable] = None, *, clock: Callable[[], int] = now_ms):
        self.venue = venue
        self.publish = publish
        self.clock = clock
        self._active: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.on_change: Optional[Callable[[], None]] = None   # e.g. push a fresh dashboard view
        self._tokens = {level: float(burst) for level, (_, burst) in BUDGET.items()}
        self._filled_at = clock()
        self._seen: OrderedDict[str, int] = OrderedDict()   # happening key -> when told
        self._recent: deque = deque(maxlen=RECENT)
        self._held: Counter = Counter()        # kind -> held back since the last summary
        self.held_back: Counter = Counter()    # kind -> held back in all
        self._summary_at: dict[str, int] = {}
        self.changes = 0   # moves on every alert raised, told or cleared: readers poll it (no callback under a lock)

    def raise_(self, key: str, kind: str, level: str, text: str, *, event: str = "", gate: str = "",
               tags: tuple = ()) -> bool:
        """Raise (or update) the alert `key`; True when it was new or changed (and so was sent, unless
        the level's budget held it back)."""
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
                     "tags": list(tags), "ts": self.clock()}
            self._active[key] = {**alert, "key": key, "since": old["since"] if old else alert["ts"]}
        (log.error if level == "critical" else log.warning)("alert (%s, %s): %s", kind, level, text)
        self._send(alert)
        return True

    def clear(self, key: str, text: str = "", *, quiet: bool = False) -> bool:
        """The condition behind `key` is over: one `info` alert says so (none when `quiet`: another alert
        took its place). False when it was not active."""
        with self._lock:
            old = self._active.pop(key, None)
        if old is None:
            return False
        if quiet:
            with self._lock:
                self.changes += 1
            if self.on_change is not None:
                self.on_change()
            return True
        said = text or f"resolved: {old['text']}"
        log.info("alert cleared (%s): %s", old["kind"], said)
        self._send({"kind": old["kind"], "level": "info", "event": old["event"], "gate": old["gate"],
                    "text": said[:MAX_TEXT], "tags": old["tags"] + ["resolved"], "ts": self.clock()})
        return True

    def notify(self, kind: str, level: str, text: str, *, key: str = "", event: str = "", gate: str = "",
               tags: tuple = ()) -> bool:
        """A happening, told once (once in DEDUP_MS under `key`); False when it was told already."""
        if level not in LEVELS:
            raise ValueError(f"alert level {level!r}")
        now = self.clock()
        if key:
            with self._lock:
                told = self._seen.get(key)
                if told is not None and now - told < DEDUP_MS:
                    return False
                self._seen[key] = now
                self._seen.move_to_end(key)
                while len(self._seen) > MAX_KEYS:
                    self._seen.popitem(last=False)
        self._send({"kind": kind, "level": level, "event": event, "gate": gate, "text": text[:MAX_TEXT],
                    "tags": list(tags), "ts": now})
        return True

    def active(self) -> list[dict]:
        """The alerts still standing, oldest first."""
        with self._lock:
            return sorted((dict(a) for a in self._active.values()), key=lambda a: a["since"])

    def ranked(self) -> list[dict]:
        """The alerts still standing, the most serious first (then the oldest)."""
        return sorted(self.active(), key=lambda a: (-LEVELS.index(a["level"]), a["since"]))

    def is_active(self, key: str) -> bool:
        with self._lock:
            return key in self._active

    def level_of(self, key: str) -> Optional[str]:
        """The level `key` stands at (None: not active)."""
        with self._lock:
            a = self._active.get(key)
            return a["level"] if a else None

    def problem(self) -> bool:
        """Something stands that needs a person: a `warn` or `critical` alert is active."""
        with self._lock:
            return any(a["level"] != "info" for a in self._active.values())

    def report(self) -> dict:
        """For /api/house and the dashboard: standing alerts ranked, the latest told (newest first)."""
        with self._lock:
            recent = list(self._recent)[::-1]
            held = dict(self.held_back)
        return {"active": self.ranked(), "recent": recent, "held_back": held}

    # -- the budget ------------------------------------------------------------------------------
    def _take(self, level: str, now: int) -> bool:
        with self._lock:
            elapsed = max(0, now - self._filled_at)
            self._filled_at = now
            for lvl, (per_min, burst) in BUDGET.items():
                self._tokens[lvl] = min(float(burst), self._tokens[lvl] + elapsed * per_min / 60_000)
            if self._tokens[level] >= 1:
                self._tokens[level] -= 1
                return True
            return False

    def tick(self) -> None:
        """Once a second or so: say what the budget held back (one summary per kind a minute)."""
        now = self.clock()
        with self._lock:
            due = [(kind, n) for kind, n in self._held.items()
                   if n and now - self._summary_at.get(kind, -SUMMARY_MS) >= SUMMARY_MS]
            for kind, _ in due:
                self._held[kind] = 0
                self._summary_at[kind] = now
        for kind, n in due:
            self._publish({"kind": kind, "level": "info", "event": "", "gate": "", "ts": now, "tags": ["held_back"],
                           "text": f"{n} more {kind} alert{'s' if n > 1 else ''} held back to keep phones quiet; "
                                   "the dashboard lists them all"})

    def _send(self, alert: dict) -> None:
        sent = self._take(alert["level"], alert["ts"])
        with self._lock:
            self.changes += 1
            self._recent.append({**alert, "sent": sent})
            if not sent:
                self._held[alert["kind"]] += 1
                self.held_back[alert["kind"]] += 1
        if sent:
            self._publish(alert)
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.debug("alert on_change hook failed", exc_info=True)

    def _publish(self, alert: dict) -> None:
        if self.publish is not None:
            try:
                # QoS 1, not retained: paho keeps it while the broker is away and sends it after reconnect.
                self.publish(alerts_topic(self.venue), json.dumps(alert, separators=(",", ":")), False)
            except Exception as exc:   # an alert that cannot go out must not take its raiser down
                log.warning("alert not published: %s", exc)

