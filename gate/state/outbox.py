"""The durable outbox: every scan event is on disk before it is sent.

SQLite in WAL mode. Admissions are committed with a full sync (they must
survive a power cut before the turnstile opens); other results ride along
with normal sync. A row is deleted only when the broker acknowledged it.
The per-gate sequence number lives in the same file, bumped in the same
transaction as the row it numbers, so it survives restarts and never repeats.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Optional

from gate.bus.codec import pack_scan
from gate.core import sqlitefile as recovery
from gate.core.clock import now_ms
from gate.core.events import ScanEvent
from gate.state.diskspace import DiskFull, StorageReadOnly, is_full, is_readonly, storage_readonly

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sent (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL, acked INTEGER NOT NULL);
"""
KEEP_SENT_MS = 24 * 3600 * 1000   # acknowledged events kept a day, for the house to ask again


class Outbox:
    """Append on the scan thread; `pending`/`ack` from the publisher's own instance."""

    def __init__(self, path, readonly: bool = False):
        self.path = Path(path)
        self._sync: Optional[bool] = None
        self._lock = threading.Lock()
        self.on_full = None   # called when the disk is full; True if it made room (gate/state/diskspace.py)
        self.readonly = readonly
        if readonly:
            # Read-only storage: what is in it can still be sent; nothing new is written, nothing deleted.
            self.db = recovery.connect_readonly(self.path, SCHEMA, isolation_level=None, check_same_thread=False)
            self.set_aside = None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db, self.set_aside = recovery.open_or_set_aside(
            self.path, self._open, "the gate's outbox",
            "its readable rows are copied into the new one and sent; the moved file is kept for recovery")
        if self.set_aside is not None:
            self._salvage(self.set_aside)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(SCHEMA)
            recovery.check(db)
        except BaseException:
            db.close()
            raise
        return db

    def _salvage(self, aside: Path) -> None:
        """Copy what can still be read of a damaged outbox; never drop it silently."""
        rows, top, why = [], 0, ""
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
            try:
                for row in old.execute("SELECT value FROM counter WHERE name='seq'"):
                    top = max(top, int(row[0]))
                for row in old.execute("SELECT seq, id, payload FROM outbox ORDER BY seq"):
                    rows.append(row)
            finally:
                old.close()
        except sqlite3.DatabaseError as exc:
            why = str(exc)
        top = max([top] + [r[0] for r in rows])
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR IGNORE INTO outbox VALUES (?,?,?)", rows)
            self.db.execute("INSERT OR REPLACE INTO counter VALUES ('seq', ?)", (top,))
            self.db.execute("COMMIT")
        if why:
            log.error("outbox %s: %d unsent event(s) recovered, the rest could not be read (%s); they stay in "
                      "%s for recovery: nothing was deleted", self.path, len(rows), why, aside)
        else:
            log.warning("outbox %s: all %d unsent event(s) recovered from %s", self.path, len(rows), aside)

    def _set_sync(self, full: bool) -> None:
        if self._sync != full:
            self.db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._sync = full

    def append(self, gate: str, ts: int, event: str, ticket: str, direction: str, result: str,
               reason: str, attention=(), mode: str = "live", clock: str = "ok", instance: str = "") -> ScanEvent:
        """Number, store and return a scan event; durable when this returns.

        On a full disk the reserve is released (`on_full`) and the write tried once more;
        if there is still no room, DiskFull: the caller must not act as if it was recorded."""
        if self.readonly:
            raise StorageReadOnly(f"outbox {self.path}: the storage is read-only")
        args = (gate, ts, event, ticket, direction, result, reason, attention, mode, clock, instance)
        try:
            return self._append(*args)
        except sqlite3.OperationalError as exc:
            self._unwritable(exc)
            why = exc
        if self.on_full is not None and self.on_full():
            try:
                return self._append(*args)
            except sqlite3.OperationalError as exc:
                self._unwritable(exc)
                why = exc
        raise DiskFull(f"outbox {self.path}: {why}")

    def _unwritable(self, exc: sqlite3.OperationalError) -> None:
        """Raise StorageReadOnly for a write the read-only storage refused (remounted while running: SQLite
        may call it an I/O error); re-raise anything but a full disk."""
        if is_readonly(exc) or (is_full(exc) and storage_readonly(self.path.parent)):
            raise StorageReadOnly(f"outbox {self.path}: {exc} (the storage is read-only)") from None
        if not is_full(exc):
            raise exc

    def _append(self, gate, ts, event, ticket, direction, result, reason, attention, mode, clock,
                instance) -> ScanEvent:
        with self._lock:
            self._set_sync(result == "admitted")
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM counter WHERE name='seq'").fetchone()
                top = db.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0
                seq = max(row[0] if row else 0, top) + 1
                e = ScanEvent(id=secrets.token_hex(16), gate=gate, seq=seq, ts=ts, event=event, ticket=ticket,
                              dir=direction, result=result, reason=reason, attention=list(attention),
                              mode=mode, clock=clock, instance=instance)
                db.execute("INSERT INTO outbox VALUES (?,?,?)", (seq, e.id, pack_scan(e)))
                db.execute("INSERT OR REPLACE INTO counter VALUES ('seq', ?)", (seq,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:   # SQLite may have rolled back already (disk full): don't mask why
                    db.execute("ROLLBACK")
                raise
        return e

    def pending(self, after: int = 0, limit: int = 500) -> list[tuple[int, bytes]]:
        return self.db.execute("SELECT seq, payload FROM outbox WHERE seq>? ORDER BY seq LIMIT ?",
                               (after, limit)).fetchall()

    def ack(self, seqs) -> None:
        """Forget acknowledged rows, in one transaction. Losing a delete to a
        power cut only means a resend, which the house counts once."""
        seqs = list(seqs)
        if seqs and not self.readonly:
            with self._lock:
                self._set_sync(False)
                now = now_ms()
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for i in range(0, len(seqs), 500):
                        part = seqs[i:i + 500]
                        marks = ",".join("?" * len(part))
                        self.db.execute(f"INSERT OR REPLACE INTO sent SELECT seq, payload, {now} FROM outbox "
                                        f"WHERE seq IN ({marks})", part)
                        self.db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", part)
                    if seqs[0] % 1000 < len(seqs):  # now and then: forget what is older than a day
                        self.db.execute("DELETE FROM sent WHERE acked < ?", (now - KEEP_SENT_MS,))
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise

    def sent_payloads(self, seqs) -> list[bytes]:
        """Acknowledged events the house asks for again (those still kept)."""
        seqs = [int(x) for x in seqs][:1000]
        if not seqs:
            return []
        return [r[0] for r in self.db.execute(
            f"SELECT payload FROM sent WHERE seq IN ({','.join('?' * len(seqs))}) ORDER BY seq", seqs)]

    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self.db.close()
