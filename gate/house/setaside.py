"""Setting a gate's reports aside, and taking them back (`gate house -c FILE set-aside GATE --since TIME`).

When a door's Pi is stolen, its credential can report anything under that door's
name. The house can set that gate's reports since a time aside: they stay in the
attendance log, are not counted, are not uploaded to pretix, and show as set aside on
/api/house and the dashboard. Taking them back (`--undo`) counts them again and queues
them for pretix. "Since" is judged by when the house received each report, not by the
time the report claims: a thief can put any time on a scan, not on its arrival.

The command writes the house's own SQLite file (the `set_aside` table, and the pretix
upload queue in the same transaction, so no scan slips through to pretix between the
two); a running house notices within a second and recounts. Scans that reached pretix
before the set-aside cannot be called back from here: the command says how many.
"""

from __future__ import annotations

import datetime
import sqlite3
import time

from gate.bus import values
from gate.core.clock import now_ms
from gate.core.errors import GateError
from gate.core.storage import HouseFiles


class SetAsideError(GateError, ValueError):
    """A bad gate id or time (exit 2)."""


def current(db) -> dict[str, int]:
    """gate -> since (unix ms) for every gate whose reports are set aside."""
    return dict(db.execute("SELECT gate, since FROM set_aside").fetchall())


def parse_since(text: str, now: float | None = None) -> int:
    """`HH:MM[:SS]` (today, local time; yesterday when that is still to come) or an ISO 8601 date and time."""
    now = time.time() if now is None else now
    try:
        t = datetime.time.fromisoformat(text)
        day = datetime.datetime.fromtimestamp(now).date()
        when = datetime.datetime.combine(day, t)
        if when.timestamp() > now:
            when -= datetime.timedelta(days=1)
    except ValueError:
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise SetAsideError(f"--since {text!r}: give HH:MM (today) or an ISO 8601 time "
                                "such as 2026-03-01T19:30") from None
    return int(when.timestamp() * 1000)


def _has_uploads(db) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='pretix_uploads'").fetchone() is not None


def set_aside(db, gate: str, since: int) -> dict:
    """Set `gate`'s reports received since `since` aside; returns what that touched."""
    with db:
        db.execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?)", (gate, since, now_ms()))
        n = db.execute("SELECT count(*) FROM scans WHERE gate=? AND received>=?", (gate, since)).fetchone()[0]
        unqueued = uploaded = 0
        if _has_uploads(db):
            pick = "FROM pretix_uploads WHERE id IN (SELECT id FROM scans WHERE gate=? AND received>=?) AND gate=?"
            uploaded = db.execute(f"SELECT count(*) {pick} AND state != 'queued'", (gate, since, gate)).fetchone()[0]
            unqueued = db.execute(f"DELETE {pick} AND state = 'queued'", (gate, since, gate)).rowcount
        db.execute("INSERT INTO set_aside_log VALUES (?, ?, ?, 'set aside', ?)", (now_ms(), gate, since, n))
    return {"events": n, "unqueued": unqueued, "uploaded": uploaded}


def take_back(db, gate: str, enqueue=None) -> dict:
    """Count `gate`'s reports again (and queue them for pretix with `enqueue(db, events)`)."""
    from gate.house.log import COUNTED
    with db:
        row = db.execute("SELECT since FROM set_aside WHERE gate=?", (gate,)).fetchone()
        if row is None:
            return {"events": 0, "was_set_aside": False, "queued": 0}
        since = row[0]
        db.execute("DELETE FROM set_aside WHERE gate=?", (gate,))
        n = db.execute("SELECT count(*) FROM scans WHERE gate=? AND received>=?", (gate, since)).fetchone()[0]
        queued = 0
        if enqueue is not None and _has_uploads(db):
            from gate.core.events import ScanEvent
            rows = db.execute("SELECT id, gate, seq, ts, event, ticket, dir, result, reason, mode FROM scans "
                              f"WHERE gate=? AND received>=? AND {COUNTED} ORDER BY rowid", (gate, since)).fetchall()
            queued = enqueue(db, [ScanEvent(id=r[0], gate=r[1], seq=r[2], ts=r[3], event=r[4], ticket=r[5], dir=r[6],
                                            result=r[7], reason=r[8], mode=r[9]) for r in rows])
        db.execute("INSERT INTO set_aside_log VALUES (?, ?, ?, 'taken back', ?)", (now_ms(), gate, since, n))
    return {"events": n, "was_set_aside": True, "queued": queued}


def main(cfg, gate: str, since_text: str | None, undo: bool) -> int:
    """The command: prints what it did; 0 done, 1 the house's file refused, 2 bad input."""
    import sys
    if not values.is_id(gate or ""):
        print(f"gate: set-aside: {gate!r} is not a gate id", file=sys.stderr)
        return 2
    if not undo and not since_text:
        print("gate: set-aside: give --since TIME (when the door was lost), or --undo", file=sys.stderr)
        return 2
    from gate.house.log import AttendanceLog
    path = HouseFiles.of(cfg.storage.dir).log
    try:
        since = 0 if undo else parse_since(since_text or "")
        log = AttendanceLog(path)
    except SetAsideError as exc:
        print(f"gate: set-aside: {exc}", file=sys.stderr)
        return 2
    try:
        log.db.execute("PRAGMA busy_timeout=10000")   # the running house writes the same file
        if undo:
            from gate.house.uploads import enqueue
            r = take_back(log.db, gate, enqueue)
            if not r["was_set_aside"]:
                print(f"gate: set-aside: {gate}'s reports are not set aside; nothing to take back", file=sys.stderr)
                return 1
            print(f"{gate}: {r['events']} report(s) taken back: counted again" +
                  (f", {r['queued']} queued for pretix" if r["queued"] else ""))
            return 0
        r = set_aside(log.db, gate, since)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since / 1000))
        print(f"{gate}: reports received since {when} set aside ({r['events']} so far, and any that follow): "
              "kept in the log, not counted, not uploaded to pretix" +
              (f"; {r['unqueued']} taken off the pretix queue" if r["unqueued"] else ""))
        if r["uploaded"]:
            print(f"{gate}: {r['uploaded']} of them had already reached pretix before this; "
                  "check them there (pretix keeps its own check-in log)")
        print(f"a running house recounts within a second; take them back with: gate house -c {cfg.path} "
              f"set-aside {gate} --undo")
        return 0
    except sqlite3.Error as exc:
        print(f"gate: set-aside: the house's attendance log refused the change ({exc}); nothing was changed",
              file=sys.stderr)
        return 1
    finally:
        log.close()
