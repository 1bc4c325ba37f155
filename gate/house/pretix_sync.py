"""pretix → house → gates: tonight's ticket data, down.

The house keeps what the check-in list holds in its own SQLite (tables `pretix_*` in
house.db): every position with its secret, event date, holder, seat, attention flag,
validity and state (valid, blocked, or revoked when its order is unpaid or cancelled),
pretix's revoked and blocked secrets, the check-ins pretix has recorded, and the event's
valid `pretix_sig1` keys. The first sync reads the whole list, page by page into
staging tables (memory holds one page); later ones ask pretix which orders changed
since a marker and re-read only those.

The marker is pretix's own data, never a `Date` header: the newest `last_modified` of
the orders seen, but never later than the house's own clock (a pretix or proxy whose
clock runs ahead cannot push it past changes still to come), less a small margin. A
stored marker in the future (a clock put back, a database from elsewhere) is refused
and a full sync is made instead.

A result is checked before it replaces anything (gate/house/pretix_guard.py): an empty
list, one that would drop an unusual share of the tickets, or one where most positions
were unusable is held for a person; the house keeps the last good data.

A check-in recorded in pretix that no gate made (a pretix app at another door) becomes
a scan event from the pseudo-gate `pretix`, so gates treat the ticket as used and the
house counts it as pretix does. A standby house keeps its own copy warm with the same rounds
but hands no check-in on (`hand_on=False`): those the active house already passed on are in its
log and marked seen; the rest wait, unseen, for the round after it takes over.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from gate.boxoffice.pretix_api import PretixClient, PretixError, iso, parse_time
from gate.core.events import ScanEvent
from gate.house import curtain
from gate.house import pretix_guard as guard
from gate.house.pretix_list import ticket_list
from gate.house.pretix_rows import COLUMNS, ROW_SQL, SetAside, gate_event, marker_text, modified_ms, position_row

log = logging.getLogger(__name__)

PSEUDO_GATE = "pretix"
FULL_RESYNC_ORDERS = 200     # more changed orders than this: re-read the whole list instead
MARGIN_MS = 2_000            # the marker is set this far back: pretix's commits are not instantaneous
FUTURE_MS = 5 * 60_000       # a stored marker further ahead of the house's clock than this is refused
MAX_ORDER_POSITIONS = 5_000  # positions of one changed order

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pretix_positions {ROW_SQL};
CREATE INDEX IF NOT EXISTS pretix_positions_ticket ON pretix_positions(ticket_id);
CREATE INDEX IF NOT EXISTS pretix_positions_order ON pretix_positions(order_code);
CREATE TABLE IF NOT EXISTS pretix_checkins (
    id INTEGER PRIMARY KEY, position INTEGER, ts INTEGER, type TEXT, seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pretix_revoked (secret TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS pretix_blocked (secret TEXT PRIMARY KEY, blocked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pretix_state (key TEXT PRIMARY KEY, value TEXT);
"""
UNIQUE = """
CREATE UNIQUE INDEX IF NOT EXISTS pretix_positions_secret_u ON pretix_positions(secret);
CREATE UNIQUE INDEX IF NOT EXISTS pretix_positions_ticket_u ON pretix_positions(ticket_id);
"""
# Staging tables are TEMP: private to one connection (the running house and `gate house pretix sync` may
# sync at the same time), and on disk (temp_store=FILE), so a large list never has to fit in memory.
STAGE = f"""
DROP TABLE IF EXISTS temp.pretix_stage; DROP TABLE IF EXISTS temp.pretix_stage_checkins;
DROP TABLE IF EXISTS temp.pretix_stage_revoked; DROP TABLE IF EXISTS temp.pretix_stage_blocked;
CREATE TEMP TABLE pretix_stage {ROW_SQL};
CREATE UNIQUE INDEX temp.pretix_stage_secret ON pretix_stage(secret);
CREATE UNIQUE INDEX temp.pretix_stage_ticket ON pretix_stage(ticket_id);
CREATE TEMP TABLE pretix_stage_checkins (id INTEGER PRIMARY KEY, position INTEGER, ts INTEGER, type TEXT);
CREATE TEMP TABLE pretix_stage_revoked (secret TEXT PRIMARY KEY);
CREATE TEMP TABLE pretix_stage_blocked (secret TEXT PRIMARY KEY, blocked INTEGER NOT NULL);
"""
UNSTAGE = """
DROP TABLE IF EXISTS temp.pretix_stage; DROP TABLE IF EXISTS temp.pretix_stage_checkins;
DROP TABLE IF EXISTS temp.pretix_stage_revoked; DROP TABLE IF EXISTS temp.pretix_stage_blocked;
"""


def open_db(path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA temp_store=FILE")
    db.executescript(SCHEMA)
    try:
        db.executescript(UNIQUE)
    except sqlite3.IntegrityError:
        # Data from before secrets and ticket ids were checked for uniqueness: two rows with one secret
        # made every list fail to pack. Drop it; the next sync reads the whole list again, checked.
        log.warning("pretix data in %s holds a secret or ticket id twice: it is read again in full", path)
        with db:
            db.execute("DELETE FROM pretix_positions")
            db.execute("DELETE FROM pretix_state WHERE key IN ('since', 'since_ms')")
        db.executescript(UNIQUE)
    return db


@dataclass
class SyncResult:
    full: bool
    positions: int          # now held
    changed_orders: int
    foreign_checkins: list  # ScanEvents to inject (check-ins made in pretix, not by a gate)
    seconds: float
    seen: int = 0           # positions pretix sent
    skipped: int = 0        # ... of which set aside
    held: Optional[guard.Held] = None   # the result was held back for a person (nothing stored)


class _Hold(Exception):
    def __init__(self, held: guard.Held):
        self.held = held


class PretixSync:
    def __init__(self, cfg, db_path, token: str):
        p = cfg.pretix
        self.slug, self.list_id, self.subevents, self.zones = p.event, p.checkin_list, p.subevents, p.zones
        self.config_path = cfg.path
        self.client = PretixClient(p.url, p.organizer, token, p.timeout_s)
        self.db = open_db(db_path)
        self.ev = f"/events/{p.event}"
        self.held = guard.HeldState(self.state, self._set_now, self._delete_now)
        self.marker_note = ""   # why the last marker was refused, for status
        self.cancel: Optional[threading.Event] = None   # set: a round ends at its next page (the house stops)

    def close(self) -> None:
        self.client.close()
        self.db.close()

    def state(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM pretix_state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def _set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO pretix_state VALUES (?,?)", (key, str(value)))

    def _set_now(self, key: str, value) -> None:
        with self.db:
            self._set(key, value)

    def _delete_now(self, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM pretix_state WHERE key=?", (key,))

    # -- the marker ---------------------------------------------------------------------
    def marker(self, now_ms: int) -> Optional[int]:
        """The stored marker (unix ms), or None for a full sync (none yet, unreadable, or in the future)."""
        raw = self.state("since_ms")
        since: Optional[int]
        try:
            if raw is not None:
                since = int(raw)
            else:
                legacy = self.state("since")    # from before: an ISO time, once taken from a Date header
                since = parse_time(legacy) if legacy else None
        except ValueError:
            since = None
        if since is not None and since > now_ms + FUTURE_MS:
            self.marker_note = (f"the stored marker {iso(since)} is ahead of the house's clock {iso(now_ms)}: "
                                "refused, reading the whole list instead")
            log.warning("pretix sync: %s", self.marker_note)
            return None
        return since

    def _newest_modified(self) -> Optional[int]:
        """pretix's own clock, as its data shows it: the newest order's `last_modified` (one page)."""
        body = self.client.get(self.ev + "/orders/", {"ordering": "-last_modified", "page": 1})
        newest, results = None, body.get("results")
        for o in results if isinstance(results, list) else []:
            t = modified_ms(o)
            if t is not None:
                newest = t if newest is None else max(newest, t)
        return newest

    # -- one round --------------------------------------------------------------------
    def sync(self, progress: Optional[Callable[[str, int, int], None]] = None, accept: bool = False,
             hand_on: bool = True) -> SyncResult:
        """One round with pretix; raises PretixError (the house's data stays as it was). A result the
        guard holds back comes back with `held` set and changes nothing; `accept` lets it through.
        `hand_on=False` (a standby house): the check-ins made in pretix are not handed on, and wait."""
        t0 = time.monotonic()
        now_ms = int(time.time() * 1000)
        event = self.client.get(self.ev + "/")
        vk = event.get("valid_keys")
        keys = vk.get("pretix_sig1") if isinstance(vk, dict) else []
        keys = [k for k in (keys if isinstance(keys, list) else []) if isinstance(k, str) and len(k) < 4096][:16]
        since = self.marker(now_ms)
        changed: list[str] = []
        newest: Optional[int] = None
        full = since is None
        if full or self.state(curtain.STARTS_KEY) is None:   # curtain times for the door flow (gate/house/curtain.py)
            subs = list(self.client.pages(self.ev + "/subevents/")) if event.get("has_subevents") is True else []
            self._set_now(curtain.STARTS_KEY, json.dumps(curtain.pretix_starts(event, self.slug, subs, self.subevents)))
        if since is not None:
            for o in self.client.pages(self.ev + "/orders/", {"modified_since": marker_text(since),
                                                             "ordering": "last_modified"}):
                if isinstance(o.get("code"), str) and len(o["code"]) <= 32:
                    changed.append(o["code"])
                t = modified_ms(o)
                if t is not None:
                    newest = t if newest is None else max(newest, t)
                if len(changed) > FULL_RESYNC_ORDERS:
                    full = True
                    break
        if full:
            newest = self._newest_modified()
            marker = min(newest if newest is not None else now_ms, now_ms) - MARGIN_MS
            r = self._full(keys, marker, progress, accept, hand_on)
        else:
            assert since is not None
            marker = since if newest is None else max(since, min(newest, now_ms) - MARGIN_MS)
            r = self._incremental(keys, since, marker, sorted(set(changed)), progress, accept, hand_on)
        r.seconds = time.monotonic() - t0
        return r

    def _stage_page(self, page, aside: SetAside, table: str) -> tuple[int, int]:
        """Rows of one page into `table`; (seen, skipped)."""
        if self.cancel is not None and self.cancel.is_set():
            raise PretixError("stopped before the round was complete", 0, "unreachable")
        seen = skipped = 0
        for p in page:
            seen += 1
            if not isinstance(p, dict):
                aside.add(p, "not an object")
                skipped += 1
                continue
            row, extra = position_row(p, self.slug, self.list_id, self.subevents)
            if row is None:
                aside.add(p, extra)
                skipped += 1
                continue
            if self.db.execute(f"INSERT OR IGNORE INTO {table} ({COLUMNS}) VALUES "
                               "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row).rowcount == 0:
                same = self.db.execute(f"SELECT secret FROM {table} WHERE id=?", (row[0],)).fetchone()
                if same and same[0] == row[1]:
                    seen -= 1          # the same position twice (a list that moved while paged): once is enough
                    continue
                aside.add(p, "its secret or ticket id is on the list already (two positions, one ticket)")
                skipped += 1
                continue
            self.db.executemany("INSERT OR IGNORE INTO pretix_stage_checkins (id, position, ts, type) "
                                "VALUES (?,?,?,?)", extra)
        return seen, skipped

    def _secrets(self, path: str, params: dict, table: str, blocked: bool) -> None:
        for page in self.client.page_lists(self.ev + path, params):
            rows = [r for r in page if isinstance(r, dict) and isinstance(r.get("secret"), str)
                    and 0 < len(r["secret"]) <= 1024]
            with self.db:
                if blocked:
                    self.db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?,?)",
                                        [(r["secret"], int(r.get("blocked") is True)) for r in rows])
                else:
                    self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", [(r["secret"],) for r in rows])

    def _judge(self, base, new, seen, skipped, full, accept) -> Optional[guard.Held]:
        if accept:
            return None
        why = guard.judge(base[0], base[1], new[0], new[1], seen, skipped, self.state("empty_accepted") == "1", full)
        if not why:
            return None
        text = guard.explain(why, base[0], base[1], new[0], new[1], seen, skipped, self.list_id, self.config_path)
        return guard.Held(why, text, base[0], base[1], new[0], new[1], seen, skipped, full, int(time.time() * 1000))

    def _full(self, keys, marker, progress, accept, hand_on=True) -> SyncResult:
        db = self.db
        base = guard.baseline(db, self.state)
        db.executescript(STAGE)
        aside = SetAside(db)
        try:
            with db:
                aside.clear()
            report = (lambda page, n, count: progress("positions", min(page * 50, count), count)) if progress else None
            seen = skipped = 0
            for page in self.client.page_lists(self.ev + f"/checkinlists/{self.list_id}/positions/",
                                               {"ignore_status": "true"}, on_page=report):
                with db:   # a page at a time: memory holds one page, whatever the list's size
                    s, k = self._stage_page(page, aside, "pretix_stage")
                seen, skipped = seen + s, skipped + k
            self._secrets("/revokedsecrets/", {}, "pretix_stage_revoked", False)
            self._secrets("/blockedsecrets/", {}, "pretix_stage_blocked", True)
            new = guard.counts(db, "pretix_stage", "pretix_stage_blocked")
            held = self._judge(base, new, seen, skipped, True, accept)
            if held:
                self.held.save(held)
                return SyncResult(True, base[0], 0, [], 0.0, seen, skipped, held)
            with db:
                db.execute("DELETE FROM pretix_positions")
                db.execute(f"INSERT INTO pretix_positions ({COLUMNS}) SELECT {COLUMNS} FROM pretix_stage")
                db.execute("INSERT OR IGNORE INTO pretix_checkins (id, position, ts, type) "
                           "SELECT id, position, ts, type FROM pretix_stage_checkins")
                for t in ("revoked", "blocked"):
                    db.execute(f"DELETE FROM pretix_{t}")
                    db.execute(f"INSERT INTO pretix_{t} SELECT * FROM pretix_stage_{t}")
                foreign = self._finish(keys, marker, skipped, hand_on)
        finally:
            db.executescript(UNSTAGE)
        if skipped:
            log.warning("pretix sent %d position(s) the gates cannot take: set aside (gate house pretix status)",
                        skipped)
        return SyncResult(True, new[0], 0, foreign, 0.0, seen, skipped)

    def _incremental(self, keys, since, marker, changed, progress, accept, hand_on=True) -> SyncResult:
        db = self.db
        base = guard.baseline(db, self.state)
        db.executescript(STAGE)
        aside = SetAside(db)
        seen = skipped = 0
        try:
            for n, code in enumerate(changed):
                for page in self.client.page_lists(self.ev + f"/checkinlists/{self.list_id}/positions/",
                                                   {"ignore_status": "true", "order": code},
                                                   max_items=MAX_ORDER_POSITIONS):
                    with db:
                        s, k = self._stage_page(page, aside, "pretix_stage")
                    seen, skipped = seen + s, skipped + k
                if progress:
                    progress("changed orders", n + 1, len(changed))
            stamp = marker_text(since)
            self._secrets("/revokedsecrets/", {"created_since": stamp}, "pretix_stage_revoked", False)
            self._secrets("/blockedsecrets/", {"updated_since": stamp}, "pretix_stage_blocked", True)
            try:
                with db:
                    db.executemany("DELETE FROM pretix_positions WHERE order_code=?", [(c,) for c in changed])
                    for row in db.execute(f"SELECT {COLUMNS} FROM pretix_stage ORDER BY id").fetchall():
                        if db.execute(f"INSERT OR IGNORE INTO pretix_positions ({COLUMNS}) VALUES "
                                      "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row).rowcount == 0:
                            aside.add({"id": row[0], "order": row[3]},
                                      "its secret or ticket id belongs to another order's position")
                            skipped += 1
                    db.execute("INSERT OR IGNORE INTO pretix_checkins (id, position, ts, type) "
                               "SELECT id, position, ts, type FROM pretix_stage_checkins")
                    db.execute("INSERT OR IGNORE INTO pretix_revoked SELECT * FROM pretix_stage_revoked")
                    db.execute("INSERT OR REPLACE INTO pretix_blocked SELECT * FROM pretix_stage_blocked")
                    held = self._judge(base, guard.counts(db), seen, skipped, False, accept)
                    if held:
                        raise _Hold(held)   # rolls the whole round back: the last good data stays
                    foreign = self._finish(keys, marker, skipped, hand_on)
            except _Hold as h:
                self.held.save(h.held)
                return SyncResult(False, base[0], len(changed), [], 0.0, seen, skipped, h.held)
        finally:
            db.executescript(UNSTAGE)
        held_now = db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0]
        return SyncResult(False, held_now, len(changed), foreign, 0.0, seen, skipped)

    def _finish(self, keys, marker: int, skipped: int, hand_on: bool = True) -> list:
        """Inside the transaction that stores a round: keys, marker, times; the check-ins to pass on."""
        self._set("keys", json.dumps(keys))
        self._set("since_ms", int(marker))
        self.db.execute("DELETE FROM pretix_state WHERE key IN ('since', 'held')")
        self._set("last_sync", int(time.time() * 1000))
        self._set("skipped", skipped)
        return self._foreign_checkins(hand_on)

    def note_published(self, tickets: int) -> None:
        """The list of `tickets` went out: the guard's baseline from now on."""
        with self.db:
            self._set("published_total", tickets)
            self._set("empty_accepted", int(tickets == 0))

    def _foreign_checkins(self, hand_on: bool = True) -> list[ScanEvent]:
        """Check-ins pretix holds that no gate made: a gate's upload carries the scan's time
        to the millisecond, so one of ours has a scan with the same ticket and time. One a house
        passed on already (this one, or the active house a standby heard) is in the log under its
        id. `hand_on=False`: the others stay unseen, for a later round."""
        out = []
        seq = int(self.state("seq", "0"))
        for cid, ts, typ, tid, event in self.db.execute(
                "SELECT c.id, c.ts, c.type, p.ticket_id, p.event FROM pretix_checkins c "
                "JOIN pretix_positions p ON p.id = c.position WHERE c.seen = 0 ORDER BY c.ts, c.id").fetchall():
            try:
                ours = (self.db.execute("SELECT 1 FROM scans WHERE gate=? AND id=?",
                                        (PSEUDO_GATE, f"pretix-checkin-{cid}")).fetchone()
                        or self.db.execute("SELECT 1 FROM scans WHERE ticket=? AND ts=? AND gate != ?",
                                           (tid, ts, PSEUDO_GATE)).fetchone())
            except sqlite3.OperationalError:   # no house log in this file yet
                ours = None
            if not ours and not hand_on:
                continue
            self.db.execute("UPDATE pretix_checkins SET seen=1 WHERE id=?", (cid,))
            if ours:
                continue
            seq += 1
            entry = typ == "entry"
            out.append(ScanEvent(f"pretix-checkin-{cid}", PSEUDO_GATE, seq, ts, event, tid, "in" if entry else "out",
                                 "admitted" if entry else "exited", "ok" if entry else "exit"))
        self._set("seq", seq)
        return out

    def ticket_list(self):
        """(tickets, revoked ticket ids, pretix meta JSON, skipped) for the list the house publishes."""
        return ticket_list(self.db, self.slug, self.zones, self.state("keys", "[]"))

    def status(self) -> dict:
        return {"positions": self.db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0],
                "last_sync": int(self.state("last_sync", "0")) or None, "held": self.held.load(),
                "marker": iso(int(self.state("since_ms"))) if self.state("since_ms") else None}


def positions_of(db, ticket_id: str) -> Optional[tuple]:
    """(position id, secret, order code, positionid) of a gate ticket id, if pretix knows it."""
    return db.execute("SELECT id, secret, order_code, positionid FROM pretix_positions WHERE ticket_id=?",
                      (ticket_id,)).fetchone()


__all__ = ["PretixSync", "PretixError", "SyncResult", "open_db", "positions_of", "PSEUDO_GATE", "gate_event"]
