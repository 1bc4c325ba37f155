"""The gate's ticket store (SQLite).

A list is imported whole or not at all: one bad value anywhere names its row
and column and leaves the store as it was. Readers on other connections see
the old list or the new one, never a mix (one transaction, WAL mode).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Callable, Iterable, Optional

from gate.clock import now_ms
from gate.events import History, Ticket, ticket_from_row, ticket_row


SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY, code TEXT NOT NULL, event TEXT NOT NULL,
    holder TEXT, seat TEXT, zone TEXT, valid_from INTEGER, valid_until INTEGER,
    status TEXT NOT NULL, tags TEXT, note TEXT, patron TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS tickets_code ON tickets(code);
CREATE TABLE IF NOT EXISTS revoked (ticket_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS used (
    ticket_id TEXT PRIMARY KEY, inside INTEGER NOT NULL, first_ts INTEGER,
    first_gate TEXT, exits INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def connect(path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db



class TicketStore:
    """Tickets, revocations and this gate's record of use, in one SQLite file."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path)
        self.db.executescript(SCHEMA)

    def close(self):
        self.db.close()

    @property
    def version(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM tickets").fetchone()[0]

    def replace_all(self, tickets: list[Ticket], revoked: Iterable[str] = (), version: Optional[int] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> int:
        """Swap in a new list atomically; returns the new data version."""
        version = version if version is not None else max(self.version + 1, now_ms())
        rows = (ticket_row(t) for t in tickets)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM tickets")
            db.execute("DELETE FROM revoked")
            db.executemany("INSERT INTO tickets VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("INSERT OR IGNORE INTO revoked VALUES (?)", ((r,) for r in revoked))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return version

    @contextlib.contextmanager
    def snapshot(self):
        """All reads inside see one version of the data (one read transaction):
        a scan during an update sees the old list or the new one, never a mix."""
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.db.execute("COMMIT")

    def by_code(self, code: str) -> Optional[Ticket]:
        row = self.db.execute("SELECT * FROM tickets WHERE code=?", (code,)).fetchone()
        return ticket_from_row(row) if row else None

    def by_id(self, ticket_id: str) -> Optional[Ticket]:
        row = self.db.execute("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return ticket_from_row(row) if row else None

    def is_revoked(self, ticket_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM revoked WHERE ticket_id=?", (ticket_id,)).fetchone() is not None

    def history(self, ticket_id: str) -> History:
        row = self.db.execute("SELECT inside, first_ts, first_gate, exits FROM used WHERE ticket_id=?",
                              (ticket_id,)).fetchone()
        return History(bool(row[0]), row[1], row[2] or "", row[3]) if row else History()

    def record(self, ticket_id: str, result: str, ts: int, gate: str) -> None:
        """Apply a scan result (own or another gate's) to the ticket's history."""
        if result == "admitted":
            self.db.execute(
                "INSERT INTO used VALUES (?,1,?,?,0) ON CONFLICT(ticket_id) DO UPDATE SET inside=1, "
                "first_ts=CASE WHEN first_ts IS NULL OR first_ts>excluded.first_ts THEN excluded.first_ts ELSE first_ts END, "
                "first_gate=CASE WHEN first_ts IS NULL OR first_ts>excluded.first_ts THEN excluded.first_gate ELSE first_gate END",
                (ticket_id, ts, gate))
        elif result == "exited":
            self.db.execute("UPDATE used SET inside=0, exits=exits+1 WHERE ticket_id=?", (ticket_id,))
        elif result == "annulled":
            # Nobody walked through: the ticket is as usable as before the scan.
            self.db.execute("DELETE FROM used WHERE ticket_id=? AND first_ts=? AND exits=0", (ticket_id, ts))
            self.db.execute("UPDATE used SET inside=0 WHERE ticket_id=?", (ticket_id,))

    def record_remote(self, scans, max_rows: int) -> int:
        """Apply other gates' scans [(ticket_id, result, ts, gate)] in one transaction; returns how many
        were kept. Once the history holds max_rows rows, scans of tickets it has never seen are skipped:
        a flood of forged ticket ids cannot grow the file without bound."""
        kept = 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            full = (db.execute("SELECT coalesce(max(rowid), 0) FROM used").fetchone()[0] >= max_rows)
            for ticket_id, result, ts, gate in scans:
                if full and db.execute("SELECT 1 FROM used WHERE ticket_id=?", (ticket_id,)).fetchone() is None:
                    continue
                self.record(ticket_id, result, ts, gate)
                kept += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return kept

