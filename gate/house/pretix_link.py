"""The house's link to pretix, running: sync down on start and every `sync_every_s`,
upload the queue whenever there is something to send, and say how it is going.

Runs on its own worker thread (gate/core/worker.py) with its own SQLite connection; the
house's ingest only queues (uploads.enqueue, inside its own transaction) and wakes it. pretix
being slow or down never holds up counting. It touches nothing of the house but what it is
handed: `mark_dirty()` (the dashboard shows the queue), `publish` for the gates' ticket list
and `inject` for check-ins made in pretix.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from gate.boxoffice.publish import ListPublisher
from gate.bus import topics
from gate.bus.client import read_secret
from gate.bus.codec import pack_scan
from gate.core.worker import Worker
from gate.house.pretix_sync import PSEUDO_GATE, PretixError, PretixSync
from gate.house.uploads import SCHEMA as UPLOADS_SCHEMA
from gate.house.uploads import Uploader

log = logging.getLogger(__name__)


def read_token(cfg) -> str:
    token = read_secret(cfg.pretix.token_file, "GATE_PRETIX_TOKEN")
    if not token or len(token) > 512 or any(c.isspace() for c in token.strip().replace("Token ", "", 1)
                                                                            .replace("Device ", "", 1)):
        raise ValueError("the pretix token file holds no usable token")
    return token.strip()


def build_list(sync: PretixSync, publisher: ListPublisher, previous_digest: str = "") -> tuple[bytes, str, int]:
    """(signed ticket list, digest of its content, tickets); b"" when nothing changed since the last."""
    tickets, revoked, meta = sync.ticket_list()
    digest = hashlib.sha256(repr((sorted((tuple(vars(t).items()) for t in tickets), key=repr), sorted(revoked),
                                  meta)).encode()).hexdigest()
    if digest == previous_digest:
        return b"", digest, len(tickets)
    return publisher.pack(tickets, revoked, pretix=meta), digest, len(tickets)


class PretixLink(Worker):
    """`mark_dirty()`: something the dashboard shows changed; `publish(topic, payload, retain)`
    queues a QoS 1 message; `inject(topic, payload)` hands the house a message as if from the bus."""

    def __init__(self, cfg, *, mark_dirty: Callable[[], None], publish: Callable, inject: Callable):
        # an upload in flight may take pretix's whole timeout before the thread sees the stop
        super().__init__("pretix", join_timeout=cfg.pretix.timeout_s + 2)
        self.cfg = cfg
        self.venue = cfg.venue
        self.mark_dirty, self.publish, self.inject_message = mark_dirty, publish, inject
        self.db_path = db_path = Path(cfg.storage.dir) / "house.db"
        self.sync = PretixSync(cfg, db_path, read_token(cfg))
        try:
            self.sync.db.executescript(UPLOADS_SCHEMA)
            self.publisher = ListPublisher.from_config(cfg, role="house")
            self.uploader = Uploader(self.sync.db, self.sync.client, cfg.pretix.event, cfg.pretix.checkin_list)
        except BaseException:
            self.sync.close()
            raise
        self.wake_up = threading.Event()
        self.sync_now = threading.Event()
        # A standby house leaves pretix to the active one: no sync, no upload until it takes over
        # (gate/house/standby.py); then it runs as a house that has just started.
        self.active: Callable[[], bool] = lambda: True
        self.digest = ""
        self.last_sync_error = ""
        self.syncs = 0

    def start(self) -> None:
        self.sync_now.set()
        super().start()

    def activated(self) -> None:
        """This house became the active one (gate/house/standby.py): sync now, and publish the list even if
        unchanged (one published while it was not active went nowhere), then upload."""
        self.digest = ""
        self.sync_now.set()
        self.wake()

    def wake(self) -> None:
        """Something to upload (or stopping): end the wait."""
        self.wake_up.set()

    def close(self) -> None:
        self.stop()
        self.sync.close()

    def status(self) -> dict:
        """For /api/house and the dashboard: read on the caller's (HTTP) thread with its own
        short-lived connection, so it never waits for an upload in flight."""
        import sqlite3
        db = sqlite3.connect(str(self.db_path), timeout=2)
        try:
            counts = dict(db.execute("SELECT state, count(*) FROM pretix_uploads GROUP BY state").fetchall())
            positions = db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0]
            last_sync = db.execute("SELECT value FROM pretix_state WHERE key='last_sync'").fetchone()
        except sqlite3.Error as exc:
            return {"error": str(exc)}
        finally:
            db.close()
        up = self.uploader
        return {"queue": counts.get("queued", 0), "uploaded": counts.get("done", 0),
                "refused": counts.get("refused", 0), "failed": counts.get("failed", 0),
                "last_success": up.last_success, "last_error": up.last_error, "last_error_at": up.last_error_at,
                "positions": positions, "last_sync": int(last_sync[0]) if last_sync else None,
                "sync_error": self.last_sync_error, "syncs": self.syncs}

    def run(self) -> None:
        every = self.cfg.pretix.sync_every_s
        next_sync = 0.0
        seen_error = None
        while not self.stopping.is_set():
            if not self.active():
                self.wake_up.wait(0.5)
                self.wake_up.clear()
                continue
            if self.sync_now.is_set() or time.monotonic() >= next_sync:
                self.sync_now.clear()
                self.do_sync()
                next_sync = time.monotonic() + every
            try:
                if self.uploader.drain(self.stopping) or self.uploader.last_error_at != seen_error:
                    seen_error = self.uploader.last_error_at
                    self.mark_dirty()     # the dashboard shows the queue: push a fresh view
            except Exception:   # never let one bad row end the link
                log.exception("pretix upload pass failed")
            wait = max(0.05, min(next_sync - time.monotonic(), self.uploader.backoff_until - time.monotonic(), 5.0))
            self.wake_up.wait(wait)
            self.wake_up.clear()

    def do_sync(self) -> bool:
        try:
            r = self.sync.sync()
        except PretixError as exc:
            self.last_sync_error = str(exc)
            log.warning("pretix sync failed: %s (the gates keep the last list)", exc)
            return False
        except Exception as exc:
            self.last_sync_error = f"{type(exc).__name__}: {exc}"
            log.exception("pretix sync failed")
            return False
        self.last_sync_error = ""
        self.syncs += 1
        self.mark_dirty()
        payload, self.digest, n = build_list(self.sync, self.publisher, self.digest)
        if payload:
            self.publish(topics.tickets(self.venue), payload, retain=True)
            log.info("pretix sync (%s, %.1f s): %d tickets published to the gates", "full" if r.full else
                     f"{r.changed_orders} changed orders", r.seconds, n)
        self.inject(r.foreign_checkins)
        return True

    def inject(self, events) -> None:
        """Check-ins made in pretix: to the gates (ticket used) and into the house's own log."""
        for e in events:
            payload = pack_scan(e)
            topic = topics.scan(self.venue, PSEUDO_GATE)
            self.publish(topic, payload)
            self.inject_message(topic, payload)


def sync_once(cfg, action: str = "sync") -> int:
    """`gate house -c FILE pretix sync|status`: one sync now, with progress, published to the
    gates; or what the upload queue holds. Works beside a running house (same SQLite, WAL)."""
    import sys

    from gate.bus.client import connect, make_client
    from gate.core.progress import Progress
    db_path = Path(cfg.storage.dir) / "house.db"
    Path(cfg.storage.dir).mkdir(parents=True, exist_ok=True)
    try:
        token = read_token(cfg)
    except (OSError, ValueError) as exc:
        from gate.core.errors import ConfigError
        raise ConfigError(cfg.path, "pretix.token_file", 0, str(exc)) from None
    sync = PretixSync(cfg, db_path, token)
    try:
        sync.db.executescript(UPLOADS_SCHEMA)
        if action == "status":
            up = Uploader(sync.db, sync.client, cfg.pretix.event, cfg.pretix.checkin_list).status()
            st = sync.status()
            print(f"positions held: {st['positions']:,}; last sync: "
                  f"{time.strftime('%H:%M:%S', time.localtime(st['last_sync'] / 1000)) if st['last_sync'] else 'never'}")
            print(f"upload queue: {up['queue']:,} waiting, {up['uploaded']:,} uploaded, {up['refused']:,} refused "
                  f"by pretix, {up['failed']:,} failed")
            return 0
        bars: dict = {}

        def progress(what, done, total):
            bars.setdefault(what, Progress(f"pretix {what}"))(done, total)
        try:
            r = sync.sync(progress)
        except PretixError as exc:
            print(f"gate: pretix sync failed: {exc}", file=sys.stderr)
            return 1
        publisher = ListPublisher.from_config(cfg, role="house")
        payload, _, n = build_list(sync, publisher)
        for p in bars.values():
            p.done("read")
        publisher.publish(payload)      # raises GateError in words when the broker does not take it
        if r.foreign_checkins:
            c = make_client(cfg.mqtt, f"house-{cfg.venue}-sync-{int(time.time())}")
            connect(c, cfg.mqtt)
            c.loop_start()
            try:
                infos = [c.publish(topics.scan(cfg.venue, PSEUDO_GATE), pack_scan(e), qos=1)
                         for e in r.foreign_checkins]
                for info in infos:
                    info.wait_for_publish(timeout=30)
            finally:
                c.disconnect()
                c.loop_stop()
        print(f"pretix sync ({'full' if r.full else f'{r.changed_orders} changed orders'}, {r.seconds:.1f} s): "
              f"{n:,} tickets published to {topics.tickets(cfg.venue)}; "
              f"{len(r.foreign_checkins)} check-in(s) made in pretix passed on")
        return 0
    finally:
        sync.close()
