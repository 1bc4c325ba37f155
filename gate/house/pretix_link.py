"""The house's link to pretix, running: sync down on start and every `sync_every_s`,
upload the queue whenever there is something to send, and say how it is going.

Two supervised workers (gate/core/supervisor.py), each with its own SQLite connection
and its own pretix connection, so a slow or failing sync never holds up uploads and
the other way round: `pretix-sync` and `pretix-upload`. The house's intake only queues
(uploads.enqueue, inside its own transaction) and wakes the uploader; pretix being slow
or down never holds up counting. An exception nobody expected is logged once with its
cause, shown in /api/house and the dashboard, and the worker starts again with backoff.
It touches nothing of the house but what it is handed: `mark_dirty()` (the dashboard shows
the queue), `publish` for the gates' ticket list and `inject` for check-ins made in pretix,
and `alerts` (gate/house/alerts.py).

What needs a person is raised as a `sync` alert (gate/house/alerts.py): a result held
back by the guard (with the command that accepts it), a sync that keeps failing, an
upload queue paused by a configuration or token problem.

A standby house (gate/house/standby.py) keeps its own copy of pretix's data warm: while it stands
by it syncs STANDBY_SLOWER times less often than the active house (GETs only, into its own house.db:
pretix is not asked twice as often because a venue runs two houses), but builds and publishes no
ticket list, hands no check-in made in pretix on to the gates, and uploads nothing. What goes wrong
there stands as one `info` alert, `sync:standby`, on its own dashboard (with `sync_error` and `held`
in /api/house): the venue hears about pretix from the active house only. When it takes over, a
round of the changes since its last one is all it needs before it publishes the list, and its
uploads start at once. While the election is still undecided (starting, claiming) nothing is synced.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from gate.boxoffice.pretix_api import PretixClient, PretixError, token_problem
from gate.boxoffice.publish import ListPublisher
from gate.bus import topics
from gate.bus.client import read_secret
from gate.bus.codec import pack_scan
from gate.core.supervisor import Supervised, describe
from gate.house.alerts import Alerts
from gate.house.pretix_list import build_list
from gate.house.pretix_rows import set_aside_report
from gate.house.pretix_sync import PSEUDO_GATE, PretixSync, SyncResult, open_db
from gate.house.uploads import SCHEMA as UPLOADS_SCHEMA
from gate.house.uploads import Uploader

log = logging.getLogger(__name__)

STANDBY_SLOWER = 3   # a standby syncs every third interval of the active house's (its copy stays warm enough)

__all__ = ["PretixLink", "build_list", "read_token", "sync_once"]

STANDBY_ALERT = "sync:standby"   # a sync problem of a house that is not the active one: its own dashboard only


def read_token(cfg) -> str:
    """The pretix token from `pretix.token_file` (or GATE_PRETIX_TOKEN); ValueError saying why not."""
    token = read_secret(cfg.pretix.token_file, "GATE_PRETIX_TOKEN") or ""
    problem = token_problem(token)
    if problem:
        raise ValueError(problem)
    return token.strip()


class _Loop(Supervised):
    """One of the link's two loops, supervised; `body(stop)` loops until the link stops."""

    def __init__(self, name: str, body: Callable, stop: threading.Event, waker: Callable[[], None],
                 join_timeout: float, on_failure: Callable[[str], None]):
        super().__init__(name, join_timeout)
        self.stopping = stop       # the link's own: one stop ends both loops
        self.body, self.waker, self.on_failure = body, waker, on_failure

    def run(self) -> None:
        self.body()

    def wake(self) -> None:
        self.waker()


class PretixLink:
    """`mark_dirty()`: something the dashboard shows changed; `publish(topic, payload, retain)`
    queues a QoS 1 message; `inject(topic, payload)` hands the house a message as if from the bus;
    `alerts`: the house's alerts (one of its own when not given: then nothing is published)."""

    def __init__(self, cfg, *, mark_dirty: Callable[[], None], publish: Callable, inject: Callable,
                 alerts: Optional[Alerts] = None):
        self.cfg = cfg
        self.venue = cfg.venue
        self.mark_dirty, self.publish, self.inject_message = mark_dirty, publish, inject
        self.db_path = db_path = Path(cfg.storage.dir) / "house.db"
        token = read_token(cfg)
        p = cfg.pretix
        self.sync = PretixSync(cfg, db_path, token)
        try:
            self.sync.db.executescript(UPLOADS_SCHEMA)
            self.publisher = ListPublisher.from_config(cfg, role="house")
            self.uploader = Uploader(open_db(db_path), PretixClient(p.url, p.organizer, token, p.timeout_s),
                                     p.event, p.checkin_list, on_pause=self._paused, on_resume=self._resumed)
        except BaseException:
            self.sync.close()
            raise
        self.alerts = alerts if alerts is not None else Alerts(cfg.venue)
        self.wake_up = threading.Event()
        self.stop = threading.Event()
        self.sync.cancel = self.stop      # a long full sync ends at its next page when the house stops
        self.sync_now = threading.Event()
        # Uploads wait for the first round (as the active house or standing by): a scan's ticket may come
        # with it. After a takeover they start at once: a ticket not yet in this house's copy waits for a
        # round, as always ("not in pretix's data yet", retried after each round).
        self.first_sync = threading.Event()
        # Which part this house plays (gate/house/standby.py): only the active house publishes the list,
        # hands check-ins on and uploads; a standby only keeps its copy of pretix's data warm.
        self.active: Callable[[], bool] = lambda: True
        self.standing_by: Callable[[], bool] = lambda: False
        self.digest = ""
        self.last_sync_error = ""
        self.last_result: Optional[SyncResult] = None
        self.last_sync_s: Optional[float] = None     # the last good round (as the active house: to the list published)
        self.syncs = 0        # good rounds, standing by or active
        self.lists = 0        # ticket lists published
        # an upload or a page in flight may take pretix's whole deadline before a loop sees the stop
        wait = 2 * p.timeout_s + 2
        self._sync = _Loop("pretix-sync", self._sync_loop, self.stop, self.sync_now.set, wait, self._crashed)
        self._upload = _Loop("pretix-upload", self._upload_loop, self.stop, self.wake_up.set, wait, self._crashed)
        self.workers = (self._sync, self._upload)

    def start(self) -> None:
        self.sync_now.set()
        self._sync.start()
        self._upload.start()

    def activated(self) -> None:
        """This house became the active one (gate/house/standby.py): sync now (its copy is warm: only what
        changed since its last round), publish the list even if unchanged (one published while it was
        not active went nowhere), upload. What it said while standing by is no longer its word."""
        self.digest = ""
        self.alerts.clear(STANDBY_ALERT, quiet=True)
        self.sync_now.set()
        self.wake()

    def wake(self) -> None:
        self.wake_up.set()

    def close(self) -> None:
        """Stop both loops (each waits at most one deadline) and close what they held."""
        self.first_sync.set()
        for w in self.workers:
            w.stop()
        self.sync.close()
        self.uploader.client.close()
        self.uploader.db.close()

    # -- the workers ----------------------------------------------------------------
    def _sync_loop(self) -> None:
        every = self.cfg.pretix.sync_every_s
        next_sync = 0.0
        while not self.stop.is_set():
            if not (self.active() or self.standing_by()):
                self.stop.wait(0.1)    # starting or claiming: the election decides within a second or two
                continue
            if self.sync_now.is_set() or time.monotonic() >= next_sync:
                self.sync_now.clear()
                try:
                    self.do_sync()
                finally:
                    self.first_sync.set()
                next_sync = time.monotonic() + (every if self.active() else every * STANDBY_SLOWER)
            self.sync_now.wait(max(0.05, next_sync - time.monotonic()))

    def _upload_loop(self) -> None:
        seen_error = None
        self.first_sync.wait(2 * self.cfg.pretix.timeout_s + 5)
        while not self.stop.is_set():
            if not self.active():
                self.wake_up.wait(0.5)   # activated() wakes it: the queue goes up at once
                self.wake_up.clear()
                continue
            if self.uploader.drain(self.stop) or self.uploader.last_error_at != seen_error:
                seen_error = self.uploader.last_error_at
                self.mark_dirty()     # the dashboard shows the queue: push a fresh view
            self.wake_up.wait(min(max(self.uploader.next_due(), 0.05), 5.0))
            self.wake_up.clear()

    def do_sync(self) -> bool:
        """One sync; True when it went through (published, or nothing changed). Standing by: into this
        house's own copy only, nothing built, published or handed on."""
        t0 = time.monotonic()
        try:
            r = self.sync.sync(hand_on=self.active())
            self.last_result = r
            active = self.active()   # again: a round begun standing by that ends active publishes at once
            if r.held:
                self.last_sync_error = ""
                self._trouble("sync:held", "critical", r.held.text, ("pretix", r.held.why))
                self.mark_dirty()
                return False
            payload, n = b"", 0
            if active:
                payload, self.digest, n = build_list(self.sync, self.publisher, self.digest)
        except PretixError as exc:
            if self.stop.is_set():
                return False          # the house is stopping: not news
            self.last_sync_error = str(exc)
            self._trouble("sync:error", "warn", f"pretix sync failed: {exc}; the gates keep the last list",
                          ("pretix", exc.kind))
            self.mark_dirty()
            return False
        except ValueError as exc:    # the list packer refused (too many tickets, too large)
            self.last_sync_error = f"the ticket list cannot be made: {exc}"
            self._trouble("sync:error", "warn", self.last_sync_error, ("pretix",))
            return False
        except Exception as exc:
            self.last_sync_error = describe(exc)
            raise                    # the supervisor logs it once and starts the worker again
        self.last_sync_error = ""
        self.syncs += 1
        if not active:
            self.last_sync_s = round(time.monotonic() - t0, 3)
            self._quiet(standing=self.standing_by())
            self.mark_dirty()
            return True
        for key in ("sync:held", "sync:error", "sync:worker"):
            self.alerts.clear(key)
        self.alerts.clear(STANDBY_ALERT, quiet=True)
        self.mark_dirty()
        if payload:
            self.publish(topics.tickets(self.venue), payload, retain=True)
            self.sync.note_published(n)
            self.lists += 1
        self.inject(r.foreign_checkins)
        self._retry_waiting_for_tickets()
        self.last_sync_s = round(time.monotonic() - t0, 3)
        if payload:
            log.info("pretix sync (%s, %.1f s): %d tickets published to the gates", "full" if r.full else
                     f"{r.changed_orders} changed orders", self.last_sync_s, n)
        return True

    def _retry_waiting_for_tickets(self) -> None:
        """Scans that waited for their ticket to appear in pretix's data: try them now it may have."""
        with self.sync.db:
            n = self.sync.db.execute("UPDATE pretix_uploads SET next_try=0 WHERE state='queued' AND error LIKE "
                                     "'ticket % not in pretix''s data yet'").rowcount
        if n:
            self.wake()

    def inject(self, events) -> None:
        """Check-ins made in pretix: to the gates (ticket used) and into the house's own log."""
        for e in events:
            payload = pack_scan(e)
            topic = topics.scan(self.venue, PSEUDO_GATE)
            self.publish(topic, payload)
            self.inject_message(topic, payload)

    # -- alerts ------------------------------------------------------------------------
    def _trouble(self, key: str, level: str, text: str, tags: tuple) -> None:
        """A sync problem: the venue's `sync` alert `key` on the active house; on any other, one `info`
        alert of its own (its dashboard shows it; the venue hears it from the active house, and from
        this one once it takes over and meets the same problem)."""
        if self.active():
            self.alerts.clear(STANDBY_ALERT, quiet=True)
            self.alerts.raise_(key, "sync", level, text, tags=tags)
        else:
            self.alerts.raise_(STANDBY_ALERT, "sync", "info", f"standby house, its own copy of pretix's data: {text}",
                               tags=(*tags, "standby"))

    def _quiet(self, standing: bool) -> None:
        """A good round while not active: its own alert is over; standing by (not merely reconnecting),
        the venue's pretix alerts this house raised while it was active are the active house's now."""
        self.alerts.clear(STANDBY_ALERT, quiet=True)
        if standing:
            for key in ("sync:held", "sync:error", "sync:worker"):
                self.alerts.clear(key, quiet=True)

    def _paused(self, kind: str, text: str) -> None:
        self.alerts.raise_("sync:uploads", "sync", "critical", f"pretix uploads paused ({kind}): {text}. Nothing is "
                           "dropped: every waiting scan goes up once this is fixed", tags=("pretix", kind))
        self.mark_dirty()

    def _resumed(self) -> None:
        self.alerts.clear("sync:uploads", "pretix uploads resumed")
        self.mark_dirty()

    def _crashed(self, what: str) -> None:
        self._trouble("sync:worker", "warn", f"the pretix link failed and restarts: {what}", ("pretix",))
        self.mark_dirty()

    # -- status --------------------------------------------------------------------------
    def status(self) -> dict:
        """For /api/house and the dashboard: read on the caller's (HTTP) thread with its own
        short-lived connection, so it never waits for an upload or a sync in flight."""
        db = sqlite3.connect(str(self.db_path), timeout=2)
        try:
            up = self.uploader.status(db)
            positions = db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0]
            state = dict(db.execute("SELECT key, value FROM pretix_state WHERE key IN "
                                    "('last_sync', 'held', 'skipped', 'since_ms')").fetchall())
            aside = set_aside_report(db, 5)
        except sqlite3.Error as exc:
            return {"error": str(exc)}
        finally:
            db.close()
        try:
            held = json.loads(state["held"]) if state.get("held") else None
        except ValueError:
            held = None
        return {**up, "positions": positions,
                "last_sync": int(state["last_sync"]) if state.get("last_sync") else None,
                "sync_error": self.last_sync_error, "syncs": self.syncs, "lists": self.lists,
                "last_sync_s": self.last_sync_s, "held": held,
                "skipped": int(state.get("skipped") or 0), "set_aside_positions": aside,
                "marker": int(state["since_ms"]) if state.get("since_ms") else None,
                "workers": [w.status() for w in self.workers]}


def sync_once(cfg, action: str = "sync", accept_shrink: bool = False) -> int:
    """`gate house -c FILE pretix sync|status [--accept-shrink]` (gate/house/pretix_cli.py)."""
    from gate.house.pretix_cli import sync_once as run
    return run(cfg, action, accept_shrink)
