"""house → pretix: every scan, exactly once, through a queue in the house's SQLite.

A scan is queued in the same transaction that writes it to the attendance log, so a house
killed at any moment has either both or neither. Admissions and exits go up as pretix
check-ins (`nonce` = the scan's id, `datetime` = the scan's time, `force`: the gate already
decided offline), `not_passed` annulments with pretix's annul call (nonce = the admission's
id), rejections as failed check-ins with their reason. A retry sends the same nonce, and
pretix records the scan once.

What ends a scan, and what does not:
- `done`: pretix took it. `refused`: pretix's own definitive answer about the ticket or the
  scan (already used, revoked, unknown secret, an annulment too late): recorded, not retried.
- pretix failing on one scan (5xx, 429, an answer we cannot read): that scan waits on its
  own schedule (1 s doubling to a minute) and the others go on; no scan holds up the queue,
  except that scans of one ticket keep their order (an exit never overtakes its entry).
- pretix unreachable: the queue waits as a whole, backing off to a minute.
- a configuration or token problem (a redirect, a 404 that is not pretix's word on a
  ticket, 401/403): the queue *pauses* and says why (an alert); nothing is dropped, and
  once the cause is fixed every waiting scan goes up exactly once (nonces).
- our own bug on one row (an exception that is not pretix's answer): that row is *set
  aside*, kept and shown; it never stops the rest.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Optional

from gate.boxoffice.pretix_api import PretixClient, PretixError
from gate.core.supervisor import describe
from gate.house.pretix_sync import PSEUDO_GATE, positions_of

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pretix_uploads (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, ts INTEGER NOT NULL, gate TEXT, event TEXT, ticket TEXT,
    exit INTEGER NOT NULL, reason TEXT, state TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0, error TEXT, done_at INTEGER);
CREATE INDEX IF NOT EXISTS pretix_uploads_queue ON pretix_uploads(state, ts);
CREATE INDEX IF NOT EXISTS pretix_uploads_ticket ON pretix_uploads(ticket, state, ts);
"""
STATES = ("queued", "done", "refused", "failed", "set_aside")
# gate reason -> pretix's failed check-in reason
FAILED_REASON = {"unknown": "invalid", "forged": "invalid", "revoked": "revoked", "blocked": "blocked",
                 "wrong_event": "product", "wrong_gate": "product", "not_yet_valid": "invalid_time",
                 "expired": "invalid_time", "already_used": "already_redeemed", "rules": "rules"}
# pretix's reasons for refusing a check-in: its word on the ticket ("error" is its own failure)
TICKET_REASONS = {"canceled", "invalid", "unpaid", "product", "rules", "revoked", "incomplete", "already_redeemed",
                  "ambiguous", "blocked", "unapproved", "invalid_time", "annulled", "already_exchanged",
                  "medium_invalid", "medium_exists"}
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
SERVER_STREAK = 3               # this many scans in a row failing on pretix's side: pretix is in trouble
WAIT_FOR_TICKET_S = 24 * 3600   # a ticket pretix never lists: given up on after a day
BATCH = 25          # results are committed per batch: a crash re-sends at most this many (same nonces)
DUE = ("SELECT u.id, u.kind, u.ts, u.gate, u.event, u.ticket, u.exit, u.reason, u.attempts FROM pretix_uploads u "
       "WHERE u.state='queued' AND u.next_try <= ? AND (u.kind = 'failed' OR u.ticket IS NULL OR NOT EXISTS ("
       " SELECT 1 FROM pretix_uploads e WHERE e.ticket = u.ticket AND e.state = 'queued' AND e.kind != 'failed'"
       " AND (e.ts < u.ts OR (e.ts = u.ts AND e.id < u.id)))) ORDER BY u.ts, u.kind='annul', u.id LIMIT ?")


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


def backoff(n: int, floor: float = 0.0) -> float:
    """1 s doubling to a minute, with a little jitter so many waiting scans do not come due as one."""
    return max(floor, min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** min(max(n - 1, 0), 10)) * random.uniform(0.8, 1.2))


class _Stop(Exception):
    """The queue as a whole has to wait (pretix unreachable or the queue paused): this row stays as it is."""


class Uploader:
    """Drains the queue; one thread, its own SQLite connection and its own pretix client."""

    def __init__(self, db, client: PretixClient, slug: str, list_id: int,
                 on_pause: Optional[Callable[[str, str], None]] = None, on_resume: Optional[Callable[[], None]] = None):
        self.db, self.client, self.slug, self.list_id = db, client, slug, list_id
        self.on_pause, self.on_resume = on_pause, on_resume
        db.executescript(SCHEMA)
        self.unreachable = 0            # tries in a row that found pretix unreachable
        self.server_streak = 0
        self.backoff_until = 0.0        # monotonic: the whole queue waits until then
        self.paused: Optional[dict] = None   # {"kind", "text", "since"}: a person has to fix something
        self.pauses = 0
        self.last_success: Optional[int] = None
        self.last_error = ""
        self.last_error_at: Optional[int] = None

    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM pretix_uploads WHERE state='queued'").fetchone()[0]

    def status(self, db=None) -> dict:
        """Per-state counts, the oldest waiting scan's age, and why the queue waits (if it does)."""
        db = db or self.db
        counts = dict(db.execute("SELECT state, count(*) FROM pretix_uploads GROUP BY state").fetchall())
        oldest = db.execute("SELECT min(ts) FROM pretix_uploads WHERE state='queued' AND typeof(ts)='integer'"
                            ).fetchone()[0]
        now = time.time()
        retrying = db.execute("SELECT count(*) FROM pretix_uploads WHERE state='queued' AND next_try > ?",
                              (now,)).fetchone()[0]
        return {"states": {s: counts.get(s, 0) for s in STATES},
                "queue": counts.get("queued", 0), "uploaded": counts.get("done", 0),
                "refused": counts.get("refused", 0), "failed": counts.get("failed", 0),
                "set_aside": counts.get("set_aside", 0), "retrying": retrying,
                "oldest_waiting_s": round(max(0.0, now - oldest / 1000), 1) if oldest is not None else None,
                "paused": dict(self.paused) if self.paused else None,
                "last_success": self.last_success, "last_error": self.last_error,
                "last_error_at": self.last_error_at}

    def next_due(self) -> float:
        """Seconds until something may be sent (for the worker's wait)."""
        now = time.monotonic()
        if self.backoff_until > now:
            return self.backoff_until - now
        row = self.db.execute("SELECT min(next_try) FROM pretix_uploads WHERE state='queued'").fetchone()
        if row[0] is None:
            return 3600.0
        return max(0.0, row[0] - time.time())

    def _error(self, msg: str) -> None:
        self.last_error, self.last_error_at = msg, int(time.time() * 1000)

    def drain(self, stop: Optional[threading.Event] = None, limit: Optional[int] = None) -> int:
        """Upload what is due; returns how many scans reached pretix."""
        sent = 0
        while not (stop and stop.is_set()) and time.monotonic() >= self.backoff_until:
            rows = self.db.execute(DUE, (time.time(), BATCH if limit is None else min(BATCH, limit - sent))).fetchall()
            if not rows:
                break
            results = []
            try:
                for row in rows:
                    if stop and stop.is_set():
                        break
                    try:
                        outcome = self._send(*row)
                    except (_Stop, PretixError):
                        raise
                    except Exception as exc:   # our bug on this row: set it aside, never crash on it again
                        outcome = ("set_aside", f"set aside: {describe(exc)}"[:300], 0)
                        log.error("upload of scan %s set aside: %s", row[0], outcome[1])
                    results.append((row[0],) + outcome)
                    if outcome[0] == "done":
                        sent += 1
            except _Stop:
                break
            finally:
                self._record(results)
            if limit is not None and sent >= limit:
                break
        return sent

    def _record(self, results) -> None:
        if not results:
            return
        now_ms = int(time.time() * 1000)
        with self.db:
            self.db.executemany(
                "UPDATE pretix_uploads SET state=?, error=?, attempts=attempts+1, next_try=?, "
                "done_at=CASE WHEN ?='queued' THEN NULL ELSE ? END WHERE id=?",
                [(state, err, next_try, state, now_ms, sid) for sid, state, err, next_try in results])

    def _call(self, sid, kind, ts, gate, ticket, exit_, reason, pos):
        """(HTTP status, body) of the pretix call for one scan; or a final (state, error, next try)."""
        if kind == "redeem":
            if pos is None:
                return self._wait_for_ticket(ts, ticket)
            return self.client.redeem(pos[1], self.list_id, sid, ts, exit=bool(exit_))
        if kind == "annul":
            admission = self.db.execute("SELECT id FROM scans WHERE gate=? AND ts=? AND ticket=? AND "
                                        "result='admitted'", (gate, ts, ticket)).fetchone()
            if admission is None:
                return "failed", "no admission to annul", 0
            state = self.db.execute("SELECT state FROM pretix_uploads WHERE id=?", admission).fetchone()
            if state and state[0] == "queued":
                return "queued", "waiting for its admission to upload", time.time() + 1
            return self.client.annul(self.list_id, admission[0], ts, "nobody passed the turnstile")
        raw = pos[1] if pos else ticket
        return self.client.failed_checkin(self.slug, self.list_id, raw or "-", FAILED_REASON.get(reason, "error"),
                                          sid, ts, exit=bool(exit_), position=pos[0] if pos else None,
                                          why=f"{reason} at gate {gate}")

    def _send(self, sid, kind, ts, gate, event, ticket, exit_, reason, attempts) -> tuple[str, str, float]:
        """(new state, error, next try) for one queued scan; raises _Stop when the whole queue must wait."""
        pos = positions_of(self.db, ticket) if ticket else None
        try:
            got = self._call(sid, kind, ts, gate, ticket, exit_, reason, pos)
        except PretixError as exc:
            return self._trouble(exc, attempts)
        if len(got) == 3:
            return got
        status, body = got
        self._ok()
        if 200 <= status < 300:
            return "done", "", 0
        word = pretix_word(kind, status, body)
        if word == "retry":   # pretix's own "server error" reason: try this scan again later
            return self._trouble(PretixError(f"pretix answered HTTP {status} ({_said(body)})", status, "server"),
                                 attempts)
        if word:
            return "refused", f"HTTP {status}: {word}"[:300], 0
        return self._trouble(PretixError(f"pretix answered HTTP {status} to a {kind} that is not its word on the "
                                         f"ticket ({_said(body)}): check pretix.url, event and checkin_list",
                                         status, "config", body), attempts)

    def _ok(self) -> None:
        self.unreachable = self.server_streak = 0
        self.last_success = int(time.time() * 1000)
        if self.paused is not None:
            log.info("pretix uploads resumed after %s", self.paused["text"])
            self.paused = None
            if self.on_resume:
                self.on_resume()

    def _trouble(self, exc: PretixError, attempts: int) -> tuple[str, str, float]:
        self._error(str(exc)[:300])
        if exc.needs_person:
            self.pauses += 1
            wait = backoff(self.pauses)
            self.backoff_until = time.monotonic() + wait   # then one scan probes whether it is fixed
            if self.paused is None or self.paused["text"] != str(exc):
                self.paused = {"kind": exc.kind, "text": str(exc)[:300], "since": int(time.time() * 1000)}
                log.error("pretix uploads paused, nothing dropped: %s", exc)
                if self.on_pause:
                    self.on_pause(exc.kind, str(exc))
            raise _Stop()
        self.pauses = 0
        if exc.kind == "unreachable":
            self.unreachable += 1
            self.backoff_until = time.monotonic() + backoff(self.unreachable, exc.retry_after)
            raise _Stop()
        # pretix answered, but not with a result for this scan: this one waits, the others go on
        self.server_streak += 1
        if self.server_streak >= SERVER_STREAK:
            self.backoff_until = time.monotonic() + backoff(self.server_streak - SERVER_STREAK + 1)
        return "queued", str(exc)[:300], time.time() + backoff(attempts + 1, exc.retry_after)

    def _wait_for_ticket(self, ts, ticket) -> tuple[str, str, float]:
        if time.time() * 1000 - ts > WAIT_FOR_TICKET_S * 1000:
            return "failed", f"pretix never listed ticket {ticket}", 0
        return "queued", f"ticket {ticket} not in pretix's data yet", time.time() + 30


def pretix_word(kind: str, status: int, body) -> str:
    """pretix's definitive answer about this scan's ticket, in a few words; 'retry' for pretix's own
    failure; '' when the answer is not about the ticket (a proxy's 404, a validation error on our call)."""
    if not isinstance(body, dict):
        return ""
    if kind == "redeem":
        reason = body.get("reason")
        if body.get("status") in ("error", "incomplete", "exchange") and isinstance(reason, str):
            if reason == "error":
                return "retry"
            if reason in TICKET_REASONS:
                return reason
        if body.get("status") == "incomplete" and status == 400:
            return "incomplete"
        return ""
    if kind == "annul":
        errors = body.get("non_field_errors")
        if status == 400 and isinstance(errors, list) and errors:
            return str(errors[0])[:200]
        detail = body.get("detail")
        if status == 404 and isinstance(detail, str) and "nonce" in detail:
            return detail[:200]
        return ""
    if status == 400 and body and all(isinstance(k, str) for k in body):
        return "; ".join(f"{k}: {v}" for k, v in list(body.items())[:3])[:200]
    return ""


def _said(body) -> str:
    if isinstance(body, dict):
        for k in ("reason", "detail", "non_field_errors"):
            if body.get(k):
                return str(body[k])[:120]
        return str(body)[:120]
    return "no JSON"
