"""The gate's ticket store (SQLite): the ticket list, and this gate's record of use.

The list holds no ticket code, only its keyed hash (see gate/boxoffice/lists.py):
a code is looked up by hashing the scanned text with the key the list's hashes
are under, kept beside them.

Two files, one writer each, so that applying a list never delays an admission:
- `tickets.db`: tickets, revocations, the list's version; written only when a
  list is swapped in (the updater thread, or `gate tickets import`), in one
  transaction. Readers on other connections see the old list or the new one,
  never a mix (WAL), and are never blocked by the writer.
- `<name>-used.db`: the record of use, kept per gate (gate/state/uses.py): first
  use, newest entry and exit, exits, and recent passages (for the entry rules);
  written only by the scan loop (own scans and other gates' synced ones, each
  into its own gate's rows). Rehearsal (`test` mode) uses are kept in tables of
  their own there: a live decision never reads them, and going live drops
  them whole (`clear_rehearsal`). A long list write
  holds tickets.db's write lock only, so the loop's write after an admission
  never waits for it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterable, Optional

from gate.boxoffice.lists import code_hasher
from gate.core import sqlitefile as recovery
from gate.core.clock import now_ms
from gate.core.events import History, Ticket, ticket_from_row, ticket_row
from gate.state import uses
from gate.state.uses import TABLES

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY, code_hash BLOB NOT NULL, event TEXT NOT NULL,
    holder TEXT, seat TEXT, zone TEXT, valid_from INTEGER, valid_until INTEGER,
    status TEXT NOT NULL, tags TEXT, note TEXT, patron TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS tickets_code_hash ON tickets(code_hash);
CREATE TABLE IF NOT EXISTS revoked (ticket_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS list_series (series TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS staff_revoked (card_id TEXT PRIMARY KEY, until INTEGER NOT NULL);
"""
# The record of use from before it was kept per gate (gate/state/uses.py migrates it): an old store's
# `main.used` is moved here first, as it always was.
OLD_USED = """
CREATE TABLE IF NOT EXISTS used.used (
    ticket_id TEXT PRIMARY KEY, inside INTEGER NOT NULL, first_ts INTEGER,
    first_gate TEXT, exits INTEGER NOT NULL DEFAULT 0, last_ts INTEGER, last_gate TEXT)"""
PASSAGES_MAX_AGE_MS = 3 * 86400_000  # older passages can no longer matter to a rule
LIST_META = ("list_series", "list_seq", "list_issued", "list_effective", "list_key")


def connect(path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class TicketStore:
    """Tickets (by code hash), revocations and this gate's record of use."""

    def __init__(self, path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.set_aside: list[Path] = []
        if readonly:
            self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not recovery.is_corrupt(exc):
                raise
            self.set_aside = recovery.set_aside_damaged(
                [self.path, self.used_path], "the gate's ticket store",
                "the gate has no tickets until the broker hands over the ticket list again (it is retained) or "
                "`gate tickets import` loads one" if self.path.name else "")
            if not self.set_aside:
                raise
            self._open()

    def _open(self) -> None:
        self.db = connect(self.path)
        try:
            self.db.execute("ATTACH DATABASE ? AS used", (str(self.used_path),))
            self.db.execute("PRAGMA used.journal_mode=WAL")
            self.db.execute("PRAGMA used.synchronous=NORMAL")
            for schema in ("main", "used"):
                row = self.db.execute(f"PRAGMA {schema}.quick_check(1)").fetchone()
                if not row or row[0] != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed ({row[0] if row else '?'})")
            self._migrate()
            self._create()
            self.prune_passages(now_ms())
        except BaseException:
            self.db.close()
            raise
        key = self._meta("ref_key")
        if key is None:
            key = os.urandom(32).hex()
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('ref_key', ?)", (key,))
            key = self._meta("ref_key") or key
        self.ref_key = bytes.fromhex(key)   # for references to unknown codes (gate/resolve.py)
        self._hasher, self._hasher_version = None, None

    def _open_readonly(self) -> None:
        """On read-only storage: the list and the record of use as they are, for reading (a file that is
        not there reads as empty). Writes fail with SQLite's `readonly` error; the callers count them."""
        self.db = recovery.connect_readonly(self.path, SCHEMA, check_same_thread=False, isolation_level=None)
        recovery.attach_readonly(self.db, self.used_path, "used")
        if not self.db.execute("SELECT 1 FROM used.sqlite_master WHERE name='uses'").fetchone():
            # Nothing to read there (no file, or one from before the record was kept per gate): an empty one.
            self.db.execute("DETACH DATABASE used")
            self.db.execute("ATTACH DATABASE ':memory:' AS used")
            uses.create(self.db)
        key = self._meta("ref_key")
        self.ref_key = bytes.fromhex(key) if key else os.urandom(32)
        self._hasher, self._hasher_version = None, None

    @property
    def used_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-used.db")

    def close(self):
        self.db.close()

    def _create(self) -> None:
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                self.db.execute(stmt)
        uses.create(self.db)

    def _migrate(self) -> None:
        """Stores from before code hashes: hash the codes in place, move the record of use out."""
        cols = [r[1] for r in self.db.execute("PRAGMA main.table_info(tickets)")]
        old_used = self.db.execute("SELECT 1 FROM main.sqlite_master WHERE name='used'").fetchone()
        if "code" not in cols and not old_used:
            return
        db = self.db
        db.execute("PRAGMA main.secure_delete=ON")   # the old codes are overwritten, not just unlinked
        db.execute("BEGIN IMMEDIATE")
        try:
            if old_used:
                db.execute(OLD_USED)   # moved per gate by _create()
                db.execute("INSERT OR IGNORE INTO used.used (ticket_id, inside, first_ts, first_gate, exits) "
                           "SELECT ticket_id, inside, first_ts, first_gate, exits FROM main.used")
                db.execute("DROP TABLE main.used")
            if "code" in cols:
                key = os.urandom(32)
                hashed = code_hasher(key)
                rows = [(r[0], hashed(r[1]), *r[2:]) for r in db.execute("SELECT * FROM main.tickets")]
                db.execute("DROP TABLE main.tickets")
                self._create()
                db.executemany("INSERT INTO tickets VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('code_key', ?)", (key.hex(),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA main.secure_delete=OFF")

    # -- the list ------------------------------------------------------------------
    def _meta(self, key: str) -> Optional[str]:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def version(self) -> int:
        """This store's data version: grows with every list swapped in."""
        v = self._meta("version")
        return int(v) if v else 0

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM tickets").fetchone()[0]

    def meta(self, key: str) -> Optional[str]:
        """A value stored beside the list (e.g. `pretix`: the pretix slug and keys it came with)."""
        return self._meta(key)

    def replace_all(self, tickets: Iterable[Ticket], revoked: Iterable[str] = (), version: Optional[int] = None,
                    progress: Optional[Callable[[int, int], None]] = None, pretix: Optional[str] = None) -> int:
        """Swap in a list of tickets with their codes (a local import); returns the new data version.
        The codes are hashed under a fresh random key: the store keeps no code."""
        key = os.urandom(32)
        hashed = code_hasher(key)
        rows = ((r[0], hashed(r[1]), *r[2:]) for r in map(ticket_row, tickets))
        meta = dict.fromkeys(LIST_META)
        if pretix is not None:
            meta["pretix"] = pretix
        return self.swap(rows, revoked, key, version, meta)

    def swap(self, rows: Iterable[tuple], revoked: Iterable[str], key: bytes, version: Optional[int] = None,
             meta: Optional[dict] = None) -> int:
        """Replace the list in one transaction with rows whose code hashes are under `key`.

        `rows` and `revoked` may be generators that raise part-way (a list that
        turns out bad): nothing changes then. `meta` entries are stored beside
        (None deletes one)."""
        version = version if version is not None else max(self.version + 1, now_ms())
        db = self.db
        # Not BEGIN IMMEDIATE: that would take the write lock of the attached record of use
        # too, and the scan loop would wait for this whole swap to record an admission.
        # The first statement writes, so the lock taken is tickets.db's alone.
        db.execute("BEGIN")
        try:
            db.execute("DELETE FROM tickets")
            db.execute("DELETE FROM revoked")
            db.executemany("INSERT INTO tickets VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("INSERT OR IGNORE INTO revoked VALUES (?)", ((r,) for r in revoked))
            entries = {"version": str(version), "code_key": key.hex(), **(meta or {})}
            for k, v in entries.items():
                if v is None:
                    db.execute("DELETE FROM meta WHERE key=?", (k,))
                else:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, str(v)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self._hasher_version = None   # our own commit does not move data_version
        return version

    def list_state(self) -> dict:
        """The applied signed list (series, seq, issued, effective, key), {} when none."""
        rows = dict(self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'list_%'").fetchall())
        if "list_series" not in rows:
            return {}
        return {"series": rows["list_series"], "seq": int(rows["list_seq"]), "issued": int(rows["list_issued"]),
                "effective": int(rows["list_effective"]), "key": rows.get("list_key", "")}

    def seen_seq(self, series: str) -> Optional[int]:
        """The highest sequence number seen from this series (applied or not)."""
        row = self.db.execute("SELECT seq FROM list_series WHERE series=?", (series,)).fetchone()
        return row[0] if row else None

    def note_seen(self, series: str, seq: int) -> None:
        self.db.execute("INSERT INTO list_series VALUES (?, ?) ON CONFLICT(series) DO UPDATE "
                        "SET seq=max(seq, excluded.seq)", (series, seq))

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
        """The ticket whose code is `code` (the scanned text), looked up by its hash."""
        # The key changes with each list: re-read only when another connection has committed
        # (data_version) or this one swapped a list in; otherwise a scan pays for one HMAC.
        dv = self.db.execute("PRAGMA main.data_version").fetchone()[0]
        if dv != self._hasher_version:
            key = self._meta("code_key")
            self._hasher = code_hasher(bytes.fromhex(key)) if key else None
            self._hasher_version = dv
        if self._hasher is None:
            return None
        row = self.db.execute("SELECT * FROM tickets WHERE code_hash=?", (self._hasher(code),)).fetchone()
        return _ticket(row) if row else None

    def by_id(self, ticket_id: str) -> Optional[Ticket]:
        row = self.db.execute("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return _ticket(row) if row else None

    def is_revoked(self, ticket_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM revoked WHERE ticket_id=?", (ticket_id,)).fetchone() is not None

    # -- revoked staff cards: kept from every list that named them, until the card has expired --
    def revoke_staff_cards(self, entries: Iterable[tuple[str, int]], now_s: int) -> int:
        """Add revoked staff cards [(card id, until)] (a later list without them does not lift them:
        the house and the box office publish lists of their own); drops those past their end."""
        db = self.db
        db.execute("BEGIN")   # the first statement writes tickets.db only (see swap())
        try:
            db.execute("DELETE FROM staff_revoked WHERE until<?", (now_s,))
            n = db.executemany("INSERT INTO staff_revoked VALUES (?, ?) ON CONFLICT(card_id) DO UPDATE "
                               "SET until=max(until, excluded.until)",
                               [(c, u) for c, u in entries if u >= now_s]).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def staff_card_revoked(self, card_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM staff_revoked WHERE card_id=?", (card_id,)).fetchone() is not None

    # -- the record of use (the scan loop's) --------------------------------------------
    def history(self, ticket_id: str, mode: str = "live") -> History:
        """What this gate knows of a ticket's use, its own scans and other gates' (gate/state/uses.py)."""
        return uses.history(self.db, mode, ticket_id)

    def record(self, ticket_id: str, result: str, ts: int, gate: str, mode: str = "live",
               sent_ts: Optional[int] = None) -> None:
        """Apply one of `gate`'s scan results (this gate's or another's) to `gate`'s record of use only.

        `info` scans are never recorded; `test` ones go to the rehearsal tables. `sent_ts`: the time the
        reporting gate stamped, when the scan is recorded at another (its clock was not synchronised)."""
        if mode in TABLES:
            uses.record(self.db, mode, ticket_id, result, ts, gate, sent_ts)

    def prune_passages(self, now: int) -> int:
        """Forget passages too old for any entry rule (bounded disk); returns how many."""
        n = 0
        for _, passages in TABLES.values():
            n += self.db.execute(f"DELETE FROM {passages} WHERE ts<?", (now - PASSAGES_MAX_AGE_MS,)).rowcount
        return n

    def clear_rehearsal(self) -> int:
        """Going live: forget every use that rehearsal scans left; returns tickets cleared."""
        db = self.db
        db.execute("BEGIN")   # the first statement writes the record of use only (see swap())
        try:
            n = db.execute("SELECT count(DISTINCT ticket_id) FROM used.rehearsal_uses").fetchone()[0]
            db.execute("DELETE FROM used.rehearsal_uses")
            db.execute("DELETE FROM used.rehearsal_passages")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def record_remote(self, scans, max_rows: int) -> int:
        """Apply other gates' scans [(ticket_id, result, ts, gate[, mode[, sent_ts]])] in one transaction; returns
        how many were kept. Once the history holds max_rows rows, scans of tickets it has never seen are skipped:
        a flood of forged ticket ids cannot grow the file without bound."""
        kept = 0
        db = self.db
        # Deferred, not IMMEDIATE: only the record of use is written here, and an IMMEDIATE
        # transaction would also wait for a ticket list being swapped into tickets.db.
        db.execute("BEGIN")
        try:
            full = (db.execute("SELECT coalesce(max(rowid), 0) FROM used.uses").fetchone()[0] >= max_rows)
            for ticket_id, result, ts, gate, *rest in scans:
                if full and db.execute("SELECT 1 FROM used.uses WHERE ticket_id=?", (ticket_id,)).fetchone() is None:
                    continue
                self.record(ticket_id, result, ts, gate, *rest)
                kept += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return kept


def _ticket(row) -> Ticket:
    return ticket_from_row((row[0], "", *row[2:]))   # the store has the code's hash, never the code
