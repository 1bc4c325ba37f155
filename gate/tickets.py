"""The gate's ticket store (SQLite) and the box office's ticket lists.

A list is imported whole or not at all: one bad value anywhere names its row
and column and leaves the store as it was. Readers on other connections see
the old list or the new one, never a mix (one transaction, WAL mode).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import TicketFileError
from .events import History, Ticket

REQUIRED = ("ticket_id", "code", "event")
OPTIONAL = ("holder", "seat", "zone", "valid_from", "valid_until", "status", "tags", "note", "patron")
MAX_CODE = 1024
MAX_FIELD = 4096
MAX_ERRORS = 20

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


def parse_time(value: str) -> int:
    """ISO 8601 to unix ms; a time without a zone is the venue's local time."""
    dt = datetime.fromisoformat(value.strip())
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp() * 1000)


def _row_to_ticket(row: dict, rowno: int, path, errors: list) -> Optional[Ticket]:
    def bad(column, problem):
        errors.append(TicketFileError(path, rowno, column, problem))

    vals = {}
    for key in REQUIRED + OPTIONAL:
        v = row.get(key)
        if v is None:
            v = ""
        if not isinstance(v, str):
            if isinstance(v, list) and key == "tags":
                v = ";".join(str(t) for t in v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and key not in ("valid_from", "valid_until"):
                v = str(v)
            else:
                bad(key, f"expected text, got {type(v).__name__}")
                return None
        if len(v) > MAX_FIELD:
            bad(key, f"value is {len(v)} characters long (at most {MAX_FIELD})")
            return None
        vals[key] = v
    for key in REQUIRED:
        if not vals[key].strip():
            bad(key, "required value is empty")
            return None
    if len(vals["code"].encode()) > MAX_CODE:
        bad("code", f"code is longer than {MAX_CODE} bytes")
        return None
    for key in ("ticket_id", "event", "code"):
        if any(ord(ch) < 32 for ch in vals[key]):
            bad(key, "contains control characters")
            return None
    times = {}
    for key in ("valid_from", "valid_until"):
        if vals[key].strip():
            try:
                times[key] = parse_time(vals[key])
            except ValueError:
                bad(key, f"not an ISO 8601 time: {vals[key]!r}")
                return None
    status = vals["status"].strip() or "valid"
    if status not in ("valid", "revoked"):
        bad("status", f"must be valid or revoked, got {status!r}")
        return None
    tags = tuple(t.strip() for t in vals["tags"].split(";") if t.strip())
    return Ticket(ticket_id=vals["ticket_id"].strip(), code=vals["code"], event=vals["event"].strip(),
                  holder=vals["holder"].strip(), seat=vals["seat"].strip(), zone=vals["zone"].strip(),
                  valid_from=times.get("valid_from"), valid_until=times.get("valid_until"),
                  status=status, tags=tags, note=vals["note"], patron=vals["patron"].strip())


def _decode_text(data: bytes, path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TicketFileError(path, line, "", f"not UTF-8 (byte 0x{data[exc.start]:02x}); "
                              "export the list as UTF-8 CSV") from None


def read_ticket_file(path, progress: Optional[Callable[[int, int], None]] = None) -> list[Ticket]:
    """Read a CSV or JSON ticket list; raises TicketFileError naming row and column."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TicketFileError(path, 0, "", f"cannot read: {exc.strerror}") from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise TicketFileError(path, line, "", "binary data (NUL byte) in a ticket list")
    text = _decode_text(data, path)
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _read_json(text, path, progress)
    return _read_csv(text, path, progress)


def _read_json(text, path, progress):
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TicketFileError(path, exc.lineno, "", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(items, dict) and isinstance(items.get("tickets"), list):
        items = items["tickets"]
    if not isinstance(items, list):
        raise TicketFileError(path, 0, "", "expected a JSON list of ticket objects")
    rows = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            rows.append((i, None))
        else:
            rows.append((i, item))
    return _collect(rows, len(items), path, progress)


def _read_csv(text, path, progress):
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise TicketFileError(path, 1, "", "empty file: a header row is required") from None
    except csv.Error as exc:
        raise TicketFileError(path, 1, "", f"malformed CSV: {exc}") from None
    header = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TicketFileError(path, 1, missing[0], f"header lacks required column(s) {', '.join(missing)}")
    dup = {h for h in header if header.count(h) > 1 and h in REQUIRED + OPTIONAL}
    if dup:
        raise TicketFileError(path, 1, sorted(dup)[0], "column appears twice in the header")
    total = text.count("\n")

    def rows():
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TicketFileError(path, reader.line_num, "", f"malformed CSV: {exc}") from None
            if not rec or rec == [""]:
                continue
            if len(rec) != len(header):
                yield reader.line_num, len(rec)
                continue
            yield reader.line_num, dict(zip(header, rec))

    return _collect(rows(), total, path, progress, ncols=len(header))


def _collect(rows: Iterable, total: int, path, progress, ncols=0) -> list[Ticket]:
    errors: list[TicketFileError] = []
    tickets: list[Ticket] = []
    ids: dict[str, int] = {}
    codes: dict[str, int] = {}
    for n, (rowno, row) in enumerate(rows, 1):
        if progress and n % 10000 == 0:
            progress(n, total)
        if isinstance(row, int):
            errors.append(TicketFileError(path, rowno, "", f"has {row} fields, the header has {ncols}"))
        elif row is None:
            errors.append(TicketFileError(path, rowno, "", "expected an object"))
        else:
            t = _row_to_ticket(row, rowno, path, errors)
            if t is not None:
                if t.ticket_id in ids:
                    errors.append(TicketFileError(path, rowno, "ticket_id",
                                                  f"duplicate ticket id {t.ticket_id!r} (first at row {ids[t.ticket_id]})"))
                elif t.code in codes:
                    errors.append(TicketFileError(path, rowno, "code", f"duplicate code (first at row {codes[t.code]})"))
                else:
                    ids[t.ticket_id] = rowno
                    codes[t.code] = rowno
                    tickets.append(t)
        if len(errors) >= MAX_ERRORS:
            break
    if progress:
        progress(total, total)
    if errors:
        first = errors[0]
        more = "".join(f"\n  {e}" for e in errors[1:])
        raise TicketFileError(first.path, first.row, first.column,
                              first.problem + (f"\n{len(errors) - 1} more problem(s):{more}" if more else ""))
    return tickets


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
        version = version if version is not None else max(self.version + 1, int(time.time() * 1000))
        rows = ((t.ticket_id, t.code, t.event, t.holder, t.seat, t.zone, t.valid_from, t.valid_until,
                 t.status, ";".join(t.tags), t.note, t.patron) for t in tickets)
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
        return _ticket(row) if row else None

    def by_id(self, ticket_id: str) -> Optional[Ticket]:
        row = self.db.execute("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return _ticket(row) if row else None

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


def _ticket(row) -> Ticket:
    return Ticket(ticket_id=row[0], code=row[1], event=row[2], holder=row[3] or "", seat=row[4] or "",
                  zone=row[5] or "", valid_from=row[6], valid_until=row[7], status=row[8],
                  tags=tuple(t for t in (row[9] or "").split(";") if t), note=row[10] or "",
                  patron=row[11] or "")
