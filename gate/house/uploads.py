"""house → pretix: every scan, exactly once, through a queue in the house's SQLite.

A scan is queued in the same transaction that writes it to the attendance log, so a house
killed at any moment has either both or neither. The uploader sends the oldest first:
admissions and exits as pretix check-ins (`nonce` = the scan's id, `datetime` = the scan's
time, `force`: the gate already decided offline), `not_passed` annulments with pretix's
annul call (nonce = the admission's id), rejections as failed check-ins with their reason.
A retry after a crash, a timeout or a 5xx sends the same nonce, and pretix records the
scan once. pretix down: the queue waits, backing off up to a minute between tries.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from gate.boxoffice.pretix_api import PretixClient, PretixError
from gate.house.pretix_sync import PSEUDO_GATE, positions_of

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pretix_uploads (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, ts INTEGER NOT NULL, gate TEXT, event TEXT, ticket TEXT,
    exit INTEGER NOT NULL, reason TEXT, state TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0, error TEXT, done_at INTEGER);
CREATE INDEX IF NOT EXISTS pretix_uploads_queue ON pretix_uploads(state, ts);
"""
# gate reason -> pretix's failed check-in reason
FAILED_REASON = {"unknown": "invalid", "forged": "invalid", "revoked": "revoked", "blocked": "blocked",
                 "wrong_event": "product", "wrong_gate": "product", "not_yet_valid": "invalid_time",
                 "expired": "invalid_time", "already_used": "already_redeemed", "rules": "rules"}
MAX_BACKOFF_S = 60.0
WAIT_FOR_TICKET_S = 24 * 3600   # a ticket pretix never lists: given up on after a day
BATCH = 25          # results are committed per batch: a crash re-sends at most this many (same nonces)


def enqueue(db, events) -> int:
    """Queue the live scans of a batch; call inside the transaction that logs them."""
    rows = []
    for e in events:
        if getattr(e, "mode", "live") not in ("live", "", None) or e.gate == PSEUDO_GATE:
            continue   # rehearsal and look-up scans never reach pretix; pretix's own check-ins came from it
        if e.result in ("admitted", "exited"):
            if not e.ticket:
                continue   # an exit sensor's count: no ticket to check out
            kind = "redeem"
        elif e.result == "annulled":
            kind = "annul"
        elif e.result == "rejected":
            kind = "failed"
        else:
            continue
        rows.append((e.id, kind, e.ts, e.gate, e.event, e.ticket, int(e.result == "exited" or e.dir == "out"),
                     e.reason))
    db.executemany("INSERT OR IGNORE INTO pretix_uploads (id, kind, ts, gate, event, ticket, exit, reason) "
                   "VALUES (?,?,?,?,?,?,?,?)", rows)
    return len(rows)


class Uploader:
    """Drains the queue; one thread, its own SQLite connection."""

    def __init__(self, db, client: PretixClient, slug: str, list_id: int):
        self.db, self.client, self.slug, self.list_id = db, client, slug, list_id
        db.executescript(SCHEMA)
        self.failures = 0
        self.backoff_until = 0.0
        self.last_success: Optional[int] = None
        self.last_error = ""
        self.last_error_at: Optional[int] = None

    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM pretix_uploads WHERE state='queued'").fetchone()[0]

    def status(self) -> dict:
        counts = dict(self.db.execute("SELECT state, count(*) FROM pretix_uploads GROUP BY state").fetchall())
        return {"queue": counts.get("queued", 0), "uploaded": counts.get("done", 0),
                "refused": counts.get("refused", 0), "failed": counts.get("failed", 0)}

    def _error(self, msg: str) -> None:
        self.last_error, self.last_error_at = msg, int(time.time() * 1000)

    def drain(self, stop: Optional[threading.Event] = None, limit: Optional[int] = None) -> int:
        """Upload what is due; returns how many scans reached pretix. Stops at the first
        error that may pass (pretix down, 5xx, timeout) and backs off."""
        sent = 0
        while not (stop and stop.is_set()) and time.monotonic() >= self.backoff_until:
            now = time.time()
            rows = self.db.execute(
                "SELECT id, kind, ts, gate, event, ticket, exit, reason, attempts FROM pretix_uploads "
                "WHERE state='queued' AND next_try <= ? ORDER BY ts, kind='annul', id LIMIT ?",
                (now, BATCH if limit is None else min(BATCH, limit - sent))).fetchall()
            if not rows:
                break
            results = []
            try:
                for row in rows:
                    if stop and stop.is_set():
                        break
                    results.append((row[0],) + self._send(*row))
                    if results[-1][1] == "done":
                        sent += 1
            except _Pause:
                break
            finally:
                self._record(results)
            if limit is not None and sent >= limit:
                break
        return sent

    def _record(self, results) -> None:
        now_ms = int(time.time() * 1000)
        with self.db:
            self.db.executemany(
                "UPDATE pretix_uploads SET state=?, error=?, attempts=attempts+1, next_try=?, "
                "done_at=CASE WHEN ?='queued' THEN NULL ELSE ? END WHERE id=?",
                [(state, err, next_try, state, now_ms, sid) for sid, state, err, next_try in results])

    def _send(self, sid, kind, ts, gate, event, ticket, exit_, reason, attempts) -> tuple[str, str, float]:
        """(new state, error, next try) for one queued scan; raises nothing."""
        pos = positions_of(self.db, ticket) if ticket else None
        try:
            if kind == "redeem":
                if pos is None:
                    return self._wait_for_ticket(ts, ticket)
                status, body = self.client.redeem(pos[1], self.list_id, sid, ts, exit=bool(exit_))
            elif kind == "annul":
                admission = self.db.execute("SELECT id FROM scans WHERE gate=? AND ts=? AND ticket=? AND "
                                            "result='admitted'", (gate, ts, ticket)).fetchone()
                if admission is None:
                    return "failed", "no admission to annul", 0
                state = self.db.execute("SELECT state FROM pretix_uploads WHERE id=?", admission).fetchone()
                if state and state[0] == "queued":
                    return "queued", "waiting for its admission to upload", time.time() + 1
                status, body = self.client.annul(self.list_id, admission[0], ts, "nobody passed the turnstile")
            else:
                raw = pos[1] if pos else ticket
                status, body = self.client.failed_checkin(
                    self.slug, self.list_id, raw or "-", FAILED_REASON.get(reason, "error"),
                    sid, ts, exit=bool(exit_),
                    position=pos[0] if pos else None, why=f"{reason} at gate {gate}")
        except PretixError as exc:
            if not exc.retry:
                return "failed", str(exc)[:300], 0
            self.failures += 1
            wait = max(exc.retry_after, min(MAX_BACKOFF_S, 0.5 * 2 ** min(self.failures, 8)))
            self.backoff_until = time.monotonic() + wait
            self._error(str(exc))
            raise _Pause() from None
        self.failures = 0
        self.last_success = int(time.time() * 1000)
        if status in (200, 201):
            return "done", "", 0
        what = f"HTTP {status}: {body.get('reason') or body.get('non_field_errors') or body.get('detail') or body}"
        self._error(what[:300])
        return "refused", what[:300], 0   # pretix's answer about this scan: recorded, not retried

    def _wait_for_ticket(self, ts, ticket) -> tuple[str, str, float]:
        if time.time() * 1000 - ts > WAIT_FOR_TICKET_S * 1000:
            return "failed", f"pretix never listed ticket {ticket}", 0
        return "queued", f"ticket {ticket} not in pretix's data yet", time.time() + 30


class _Pause(Exception):
    """pretix is unreachable or failing: stop this pass, keep the rest queued."""
