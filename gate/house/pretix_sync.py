"""pretix → house → gates: tonight's ticket data, down.

The house keeps what the check-in list holds in its own SQLite (tables `pretix_*` in
house.db): every position with its secret, event date, holder, seat, attention flag,
validity and state (valid, blocked, or revoked when its order is unpaid or cancelled),
pretix's revoked and blocked secrets, the check-ins pretix has recorded, and the event's
valid `pretix_sig1` keys. The first sync reads the whole list; later ones ask pretix which
orders changed since the last one (by pretix's own clock) and re-read only those.

From that the house makes the gates' ticket list. A check-in recorded in pretix that no
gate made (a pretix app at another door) becomes a scan event from the pseudo-gate
`pretix`, so gates treat the ticket as used and the house counts it as pretix does.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, Optional

from gate.boxoffice.pretix import ticket_seed
from gate.boxoffice.pretix_api import PretixClient, PretixError, parse_time
from gate.core.events import ScanEvent, Ticket
from gate.house import curtain

log = logging.getLogger(__name__)

PSEUDO_GATE = "pretix"
FULL_RESYNC_ORDERS = 200     # more changed orders than this: re-read the whole list instead
MAX_TEXT = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS pretix_positions (
    id INTEGER PRIMARY KEY, secret TEXT NOT NULL, ticket_id TEXT NOT NULL, order_code TEXT NOT NULL,
    positionid INTEGER, event TEXT NOT NULL, item INTEGER, subevent INTEGER, holder TEXT, seat TEXT,
    email TEXT, attention INTEGER, blocked INTEGER, order_status TEXT, valid_if_pending INTEGER,
    valid_from INTEGER, valid_until INTEGER);
CREATE INDEX IF NOT EXISTS pretix_positions_ticket ON pretix_positions(ticket_id);
CREATE INDEX IF NOT EXISTS pretix_positions_order ON pretix_positions(order_code);
CREATE TABLE IF NOT EXISTS pretix_checkins (
    id INTEGER PRIMARY KEY, position INTEGER, ts INTEGER, type TEXT, seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pretix_revoked (secret TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS pretix_blocked (secret TEXT PRIMARY KEY, blocked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pretix_state (key TEXT PRIMARY KEY, value TEXT);
"""


def open_db(path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


@dataclass
class SyncResult:
    full: bool
    positions: int          # now held
    changed_orders: int
    foreign_checkins: list  # ScanEvents to inject (check-ins made in pretix, not by a gate)
    seconds: float


def _text(v, limit=MAX_TEXT) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _int(v) -> Optional[int]:
    return v if type(v) is int and 0 <= v < 1 << 53 else None


def gate_event(slug: str, subevent: Optional[int], subevents: dict) -> str:
    """DESIGN.md's ticket event id: `<slug>` or `<slug>-<subevent id>` (or the configured mapping)."""
    if subevent:
        return subevents.get(str(subevent)) or f"{slug}-{subevent}"
    return slug


def position_row(p: dict, slug: str, list_id: int, subevents: dict):
    """One position from pretix as a table row plus its check-ins on our list;
    None for anything that does not have the shape of a position."""
    pid, secret, order = _int(p.get("id")), p.get("secret"), p.get("order")
    if pid is None or not isinstance(secret, str) or not 0 < len(secret) <= 1024 \
            or not isinstance(order, str) or not 0 < len(order) <= 32:
        return None
    try:
        vf, vu = parse_time(p.get("valid_from")), parse_time(p.get("valid_until"))
    except ValueError:
        return None
    seat = p.get("seat")
    seat = _text(seat.get("name")) if isinstance(seat, dict) else ""
    sub = _int(p.get("subevent"))
    seed = ticket_seed(secret)
    positionid = _int(p.get("positionid")) or 0
    tid = f"pretix-{seed}" if seed else f"{order}-{positionid}"
    row = (pid, secret, tid, order, positionid, gate_event(slug, sub, subevents), _int(p.get("item")), sub,
           _text(p.get("attendee_name")), seat, _text(p.get("attendee_email")), int(p.get("require_attention") is True),
           int(bool(p.get("blocked"))), _text(p.get("order__status"), 2), int(p.get("order__valid_if_pending") is True),
           vf, vu)
    checkins = []
    for c in p.get("checkins") or ():
        if not isinstance(c, dict) or c.get("list") != list_id or _int(c.get("id")) is None:
            continue
        try:
            ts = parse_time(c.get("datetime"))
        except ValueError:
            continue
        if ts is not None and c.get("type") in ("entry", "exit"):
            checkins.append((c["id"], pid, ts, c["type"]))
    return row, checkins


class PretixSync:
    def __init__(self, cfg, db_path, token: str):
        p = cfg.pretix
        self.slug, self.list_id, self.subevents, self.zones = p.event, p.checkin_list, p.subevents, p.zones
        self.client = PretixClient(p.url, p.organizer, token, p.timeout_s)
        self.db = open_db(db_path)
        self.ev = f"/events/{p.event}"

    def close(self) -> None:
        self.client.close()
        self.db.close()

    def state(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM pretix_state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def _set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO pretix_state VALUES (?,?)", (key, str(value)))

    def sync(self, progress: Optional[Callable[[str, int, int], None]] = None) -> SyncResult:
        """One round with pretix; raises PretixError (the house's data stays as it was)."""
        t0 = time.monotonic()
        event = self.client.get(self.ev + "/")
        started = self.client.server_date or time.time()
        keys = (event.get("valid_keys") or {}).get("pretix_sig1") if isinstance(event.get("valid_keys"), dict) else []
        keys = [k for k in keys or [] if isinstance(k, str) and len(k) < 4096][:16]
        since = self.state("since")
        changed: list[str] = []
        full = since is None
        # curtain times for the door flow (gate/house/curtain.py): on a first sync, or when none are kept yet
        starts = curtain.pretix_starts(event, self.slug, list(self.client.pages(self.ev + "/subevents/"))
                                       if event.get("has_subevents") is True else [], self.subevents) \
            if full or self.state(curtain.STARTS_KEY) is None else None
        if not full:
            for o in self.client.pages(self.ev + "/orders/", {"modified_since": since, "ordering": "last_modified"}):
                if isinstance(o.get("code"), str) and len(o["code"]) <= 32:
                    changed.append(o["code"])
                if len(changed) > FULL_RESYNC_ORDERS:
                    full = True
                    break
        positions_path = self.ev + f"/checkinlists/{self.list_id}/positions/"
        rows, checkins, bad = [], [], 0
        if full:
            report = (lambda page, n, count: progress("positions", min(page * 50, count), count)) if progress else None
            batches = [self.client.pages(positions_path, {"ignore_status": "true"}, on_page=report)]
        else:
            batches = [self.client.pages(positions_path, {"ignore_status": "true", "order": code}) for code in changed]
        for n, batch in enumerate(batches):
            for p in batch:
                got = position_row(p, self.slug, self.list_id, self.subevents)
                if got is None:
                    bad += 1
                    continue
                rows.append(got[0])
                checkins += got[1]
            if progress and not full:
                progress("changed orders", n + 1, len(batches))
        revoked = [r.get("secret") for r in self.client.pages(
            self.ev + "/revokedsecrets/", {} if full else {"created_since": since})]
        blocked = [(r.get("secret"), int(r.get("blocked") is True)) for r in self.client.pages(
            self.ev + "/blockedsecrets/", {} if full else {"updated_since": since})]
        if bad:
            log.warning("pretix sent %d position(s) of an unexpected shape: skipped", bad)
        with self.db:
            if full:
                self.db.execute("DELETE FROM pretix_positions")
                self.db.execute("DELETE FROM pretix_revoked")
                self.db.execute("DELETE FROM pretix_blocked")
            else:
                self.db.executemany("DELETE FROM pretix_positions WHERE order_code=?", [(c,) for c in changed])
            self.db.executemany("INSERT OR REPLACE INTO pretix_positions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                rows)
            self.db.executemany("INSERT OR IGNORE INTO pretix_checkins (id, position, ts, type) VALUES (?,?,?,?)",
                                checkins)
            self.db.executemany("INSERT OR IGNORE INTO pretix_revoked VALUES (?)",
                                [(s,) for s in revoked if isinstance(s, str) and len(s) <= 1024])
            self.db.executemany("INSERT OR REPLACE INTO pretix_blocked VALUES (?,?)",
                                [(s, b) for s, b in blocked if isinstance(s, str) and len(s) <= 1024])
            self._set("keys", json.dumps(keys))
            if starts is not None:
                self._set(curtain.STARTS_KEY, json.dumps(starts))
            self._set("since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 2)))
            self._set("last_sync", int(time.time() * 1000))
            foreign = self._foreign_checkins()
        held = self.db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0]
        return SyncResult(full, held, len(changed), foreign, time.monotonic() - t0)

    def _foreign_checkins(self) -> list[ScanEvent]:
        """Check-ins pretix holds that no gate made: a gate's upload carries the scan's time
        to the millisecond, so one of ours has a scan with the same ticket and time."""
        out = []
        seq = int(self.state("seq", "0"))
        for cid, ts, typ, tid, event in self.db.execute(
                "SELECT c.id, c.ts, c.type, p.ticket_id, p.event FROM pretix_checkins c "
                "JOIN pretix_positions p ON p.id = c.position WHERE c.seen = 0 ORDER BY c.ts, c.id").fetchall():
            self.db.execute("UPDATE pretix_checkins SET seen=1 WHERE id=?", (cid,))
            try:
                ours = self.db.execute("SELECT 1 FROM scans WHERE ticket=? AND ts=? AND gate != ?",
                                       (tid, ts, PSEUDO_GATE)).fetchone()
            except sqlite3.OperationalError:   # no house log in this file yet
                ours = None
            if ours:
                continue
            seq += 1
            entry = typ == "entry"
            out.append(ScanEvent(f"pretix-checkin-{cid}", PSEUDO_GATE, seq, ts, event, tid, "in" if entry else "out",
                                 "admitted" if entry else "exited", "ok" if entry else "exit"))
        self._set("seq", seq)
        return out

    # -- what the gates get ------------------------------------------------------------
    def ticket_list(self) -> tuple[list[Ticket], list[str], str]:
        """(tickets, revoked ticket ids, pretix meta JSON) for the list the house publishes."""
        blocked = {s for s, in self.db.execute("SELECT secret FROM pretix_blocked WHERE blocked=1")}
        tickets = []
        for (secret, tid, order, positionid, event, item, holder, seat, email, attention, is_blocked, status,
             valid_if_pending, vf, vu) in self.db.execute(
                "SELECT secret, ticket_id, order_code, positionid, event, item, holder, seat, email, attention, "
                "blocked, order_status, valid_if_pending, valid_from, valid_until FROM pretix_positions"):
            paid = status == "p" or (status == "n" and valid_if_pending)
            state = "blocked" if (is_blocked or secret in blocked) else "valid"
            note = ""
            if not paid:
                state, note = "revoked", {"n": "order not paid", "c": "order cancelled",
                                          "e": "order expired"}.get(status, "order not valid")
            tickets.append(Ticket(ticket_id=tid, event=event, code=secret, holder=holder or "", seat=seat or "",
                                  zone=self.zones.get(str(item), ""), valid_from=vf, valid_until=vu, status=state,
                                  tags=("attention",) if attention else (), note=note, patron=email or "",
                                  signed=tid.startswith("pretix-")))
        # pretix revokes secrets; gates revoke ticket ids. A signed secret names its ticket (its seed),
        # so the gate refuses it offline; an unsigned one, gone from the list, is unknown there anyway.
        revoked = sorted({f"pretix-{seed}" for seed in (ticket_seed(s) for s, in
                                                        self.db.execute("SELECT secret FROM pretix_revoked")) if seed})
        meta = json.dumps({"event": self.slug, "keys": json.loads(self.state("keys", "[]"))})
        return tickets, revoked, meta

    def status(self) -> dict:
        return {"positions": self.db.execute("SELECT count(*) FROM pretix_positions").fetchone()[0],
                "last_sync": int(self.state("last_sync", "0")) or None}


def positions_of(db, ticket_id: str) -> Optional[tuple]:
    """(position id, secret, order code, positionid) of a gate ticket id, if pretix knows it."""
    return db.execute("SELECT id, secret, order_code, positionid FROM pretix_positions WHERE ticket_id=?",
                      (ticket_id,)).fetchone()


__all__ = ["PretixSync", "PretixError", "SyncResult", "open_db", "positions_of", "PSEUDO_GATE", "gate_event"]
