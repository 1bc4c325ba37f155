"""The house's attendance log: every scan event once (keyed by gate and `id`), and the holder directory.

One SQLite file, WAL, `synchronous=FULL`: an event the house acknowledged to
the broker is on disk. Counts are rebuilt from it at start.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Callable, Iterable, Iterator, Optional

from gate.core import sqlitefile as recovery
from gate.core.clock import now_ms
from gate.core.events import ScanEvent, Ticket

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id TEXT NOT NULL, gate TEXT NOT NULL, seq INTEGER, ts INTEGER, event TEXT, ticket TEXT, dir TEXT,
    result TEXT, reason TEXT, attention TEXT, received INTEGER, PRIMARY KEY (gate, id));
CREATE TABLE IF NOT EXISTS holders (ticket_id TEXT PRIMARY KEY, holder TEXT, patron TEXT, tags TEXT);
CREATE TABLE IF NOT EXISTS set_aside (gate TEXT PRIMARY KEY, since INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside_log (at INTEGER NOT NULL, gate TEXT NOT NULL, since INTEGER, action TEXT NOT NULL,
    events INTEGER NOT NULL);
"""
# Columns added since the first logs: mode (live | test | info: rehearsal scans and look-ups are kept, and
# kept apart); flag ("implausible": more than the gate's lane can pass, gate/core/lane.py: kept, not counted,
# not uploaded); sent_ts (the ts an unsynchronised gate sent, where the house placed the event at another).
COLUMNS = (("mode", "TEXT NOT NULL DEFAULT 'live'"), ("flag", "TEXT NOT NULL DEFAULT ''"), ("sent_ts", "INTEGER"))
# Not counted, not uploaded: flagged, or from a gate whose reports since a time are set aside (gate/house/setaside.py).
COUNTED = ("scans.flag = '' AND NOT EXISTS (SELECT 1 FROM set_aside s WHERE s.gate = scans.gate "
           "AND scans.received >= s.since)")


def _rekey(db) -> None:
    """Logs from before events were keyed by (gate, id): one gate could claim another's id and have
    that gate's real event dropped as a duplicate. Rebuild the table with the new key, keeping every row."""
    pk = [r[1] for r in sorted(db.execute("PRAGMA table_info(scans)"), key=lambda r: r[5]) if r[5]]
    if pk != ["id"]:
        return
    log.info("attendance log: re-keying scans by (gate, id)")
    with db:   # one transaction (executescript would commit half-way)
        db.execute("ALTER TABLE scans RENAME TO scans_by_id")
        db.execute(SCHEMA.split(";")[0])
        db.execute("INSERT OR IGNORE INTO scans SELECT * FROM scans_by_id ORDER BY rowid")
        db.execute("DROP TABLE scans_by_id")


def _open(path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        _rekey(db)
        db.executescript(SCHEMA)
        recovery.check(db)
        have = {r[1] for r in db.execute("PRAGMA table_info(scans)")}
        for col, kind in COLUMNS:
            if col not in have:
                db.execute(f"ALTER TABLE scans ADD COLUMN {col} {kind}")
        db.execute("CREATE INDEX IF NOT EXISTS scans_sent ON scans(gate, sent_ts) WHERE sent_ts IS NOT NULL")
    except BaseException:
        db.close()
        raise
    return db


class AttendanceLog:
    def __init__(self, path):
        self.path = path
        self.db, self.set_aside = recovery.open_or_set_aside(
            path, lambda: _open(path), "the house's attendance log",
            "the counts are rebuilt from what the broker kept for the house's session and from the gates, "
            "which resend the events of the last day when the house asks for the gaps")
        self.on_store: Optional[Callable] = None

    def events(self) -> Iterator[ScanEvent]:
        """Every stored scan event, in arrival order."""
        for row in self.db.execute("SELECT id, gate, seq, ts, event, ticket, dir, result, reason, attention, mode "
                                   "FROM scans ORDER BY rowid"):
            id_, gate, seq, ts, event, ticket, dir_, result, reason, attention, mode = row
            yield ScanEvent(id_, gate, seq, ts, event, ticket, dir_, result, reason,
                            attention=json.loads(attention), mode=mode)

    def holders(self) -> dict[str, tuple]:
        """ticket id -> (holder, patron, tags)."""
        return {tid: (holder, patron, tags) for tid, holder, patron, tags in self.db.execute("SELECT * FROM holders")}

    def add(self, events: Iterable[ScanEvent], marks: Optional[dict] = None) -> None:
        """Store new events in one transaction (an id already stored is ignored). `marks`: (gate, id) ->
        (flag, sent ts) from gate/house/word.py. `on_store(db, events)`, when set, runs inside that
        transaction (the pretix upload queue is filled there) with the events that count: not flagged,
        not from a gate set aside (read in this transaction, so a set-aside made meanwhile is never missed)."""
        now = now_ms()
        events = list(events)
        marks = marks or {}
        with self.db:
            rows = []
            for e in events:
                flag, sent = marks.get((e.gate, e.id), ("", None))
                rows.append((e.id, e.gate, e.seq, e.ts, e.event, e.ticket, e.dir, e.result, e.reason,
                             json.dumps(e.attention) if e.attention else "[]", now, e.mode, flag, sent))
            self.db.executemany("INSERT OR IGNORE INTO scans (id, gate, seq, ts, event, ticket, dir, result, reason, "
                                "attention, received, mode, flag, sent_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            if self.on_store is not None:
                aside = dict(self.db.execute("SELECT gate, since FROM set_aside"))
                self.on_store(self.db, [e for e, r in zip(events, rows)
                                        if not r[12] and not (e.gate in aside and now >= aside[e.gate])])

    def excluded(self) -> Iterator[tuple[str, str, str, str]]:
        """(gate, id, event, why) of every stored event that does not count: `implausible` or `set_aside`."""
        yield from self.db.execute("SELECT gate, id, event, flag FROM scans WHERE flag != ''")
        for gate, since in self.db.execute("SELECT gate, since FROM set_aside").fetchall():
            for eid, ev in self.db.execute("SELECT id, event FROM scans WHERE gate=? AND received>=? AND flag=''",
                                           (gate, since)):
                yield gate, eid, ev, "set_aside"

    def placed_ts(self, gate: str, ticket: str, sent_ts: int) -> Optional[int]:
        """Where the house placed an unsynchronised gate's admission sent with `sent_ts` (gate/house/unsynced.py)."""
        row = self.db.execute("SELECT ts FROM scans WHERE gate=? AND sent_ts=? AND ticket=? AND result='admitted' "
                              "LIMIT 1", (gate, sent_ts, ticket)).fetchone()
        return row[0] if row else None

    def replace_holders(self, tickets: Iterable[Ticket]) -> dict[str, tuple]:
        """Swap in the holder directory of a new ticket list; returns it."""
        rows = [(t.ticket_id, t.holder, t.patron, ";".join(t.tags)) for t in tickets]
        with self.db:
            self.db.execute("DELETE FROM holders")
            self.db.executemany("INSERT OR REPLACE INTO holders VALUES (?,?,?,?)", rows)
        return {r[0]: r[1:] for r in rows}

    def close(self) -> None:
        self.db.close()
