"""The record of use, kept per gate: each gate's word covers its own door (docs/contract.md).

One row per (ticket, gate): when that gate first admitted the ticket, its newest
admission and exit, and how often the ticket left there. What a gate reports (this
gate's own scans or another gate's, synced over the bus) only ever writes that
gate's row and that gate's passages. So another gate's annulment cannot erase the
use door-a recorded, and its admissions cannot rewrite door-a's time of first use;
they add a row of their own.

A ticket's history is read across its rows: first use is the earliest first
admission of any gate, `inside` is what the newest passage at any gate says (an exit
at the exit gate after an entry at door-a: outside), exits add up.

Passages (ticket, ts, dir, gate, sent_ts) feed the entry rules (entries per day,
anti-passback). `sent_ts` is the time the reporting gate put on the scan when it
differs from `ts`: another gate's clock was not synchronised, so the scan is recorded
at the time it arrived here, and its annulment (which carries the same sent time)
still finds it.
"""

from __future__ import annotations

from gate.core.events import History

SCHEMA = """
CREATE TABLE IF NOT EXISTS used.{uses} (
    ticket_id TEXT NOT NULL, gate TEXT NOT NULL, first_ts INTEGER, last_in INTEGER, last_out INTEGER,
    exits INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ticket_id, gate));
CREATE TABLE IF NOT EXISTS used.{passages} (ticket_id TEXT NOT NULL, ts INTEGER NOT NULL, dir TEXT NOT NULL,
    gate TEXT NOT NULL DEFAULT '', sent_ts INTEGER);
CREATE INDEX IF NOT EXISTS used.{passages}_ticket ON {passages}(ticket_id, ts);
"""
NAMES = {"live": ("uses", "passages", "used"), "test": ("rehearsal_uses", "rehearsal_passages", "rehearsal_used")}
TABLES = {mode: (f"used.{u}", f"used.{p}") for mode, (u, p, _) in NAMES.items()}
PASSAGES_KEPT = 64                  # per ticket, for the entry rules (entries per day, anti-passback)


def create(db) -> None:
    """The tables, for both modes; older stores are brought up to date first (`migrate`)."""
    for uses, passages, old in NAMES.values():
        for stmt in SCHEMA.format(uses=uses, passages=passages).split(";"):
            if stmt.strip():
                db.execute(stmt)
        cols = {r[1] for r in db.execute(f"PRAGMA used.table_info({passages})")}
        for col, kind in (("gate", "TEXT NOT NULL DEFAULT ''"), ("sent_ts", "INTEGER")):
            if col not in cols:   # passages from before the record was kept per gate
                db.execute(f"ALTER TABLE used.{passages} ADD COLUMN {col} {kind}")
        if db.execute("SELECT 1 FROM used.sqlite_master WHERE type='table' AND name=?", (old,)).fetchone():
            _migrate(db, old, uses, passages)


def _migrate(db, old: str, uses: str, passages: str) -> None:
    """A record of use from before it was kept per gate: one row per ticket becomes the row of the gate
    that last admitted it (first use and exits kept; outside stays outside)."""
    cols = {r[1] for r in db.execute(f"PRAGMA used.table_info({old})")}
    last = "last_ts, last_gate" if "last_ts" in cols else "NULL, NULL"
    rows = []
    for tid, inside, first_ts, first_gate, exits, last_ts, last_gate in db.execute(
            f"SELECT ticket_id, inside, first_ts, first_gate, exits, {last} FROM used.{old}"):
        last_in = last_ts if last_ts is not None else first_ts
        out = db.execute(f"SELECT max(ts) FROM used.{passages} WHERE ticket_id=? AND dir='out'", (tid,)).fetchone()[0]
        if not inside and (out is None or (last_in is not None and out <= last_in)):
            out = (last_in or 0) + 1   # it was outside; when it left is no longer known
        rows.append((tid, last_gate or first_gate or "", first_ts, last_in, out if out is not None else None, exits))
    own = not db.in_transaction   # the code-hash migration (gate/state/tickets.py) runs us inside its own
    if own:
        db.execute("BEGIN")
    try:
        db.executemany(f"INSERT OR IGNORE INTO used.{uses} (ticket_id, gate, first_ts, last_in, last_out, exits) "
                       "VALUES (?,?,?,?,?,?)", rows)
        db.execute(f"DROP TABLE used.{old}")
        if own:
            db.execute("COMMIT")
    except BaseException:
        if own:
            db.execute("ROLLBACK")
        raise


def history(db, mode: str, ticket_id: str) -> History:
    """What every gate's rows and passages say of a ticket (see the module's docstring)."""
    uses, passages = TABLES[mode]
    rows = db.execute(f"SELECT gate, first_ts, last_in, last_out, exits FROM {uses} WHERE ticket_id=?",
                      (ticket_id,)).fetchall()
    if not rows:
        return History()
    firsts = [(r[1], r[0]) for r in rows if r[1] is not None]
    first_ts, first_gate = min(firsts) if firsts else (None, "")
    newest, inside = None, False
    for _, _, last_in, last_out, _ in rows:
        t = max(x for x in (last_in, last_out, -1) if x is not None)
        here = last_in is not None and (last_out is None or last_in > last_out)
        if newest is None or (t, here) > newest:
            newest, inside = (t, here), here
    recent = db.execute(f"SELECT ts, dir FROM {passages} WHERE ticket_id=? ORDER BY ts DESC LIMIT ?",
                        (ticket_id, PASSAGES_KEPT)).fetchall()
    entries = tuple(ts for ts, d in recent if d == "in")
    exits = [ts for ts, d in recent if d == "out"]
    return History(inside, first_ts, first_gate or "", sum(r[4] for r in rows), entries[0] if entries else None,
                   exits[0] if exits else None, entries)


def record(db, mode: str, ticket_id: str, result: str, ts: int, gate: str, sent_ts: int | None = None) -> None:
    """Apply one of `gate`'s scans to `gate`'s own row and passages (nothing else is written)."""
    uses, passages = TABLES[mode]
    sent = sent_ts if sent_ts is not None and sent_ts != ts else None
    if result in ("admitted", "exited"):
        d = "in" if result == "admitted" else "out"
        if d == "in":
            db.execute(f"INSERT INTO {uses} (ticket_id, gate, first_ts, last_in) VALUES (?,?,?,?) "
                       "ON CONFLICT(ticket_id, gate) DO UPDATE SET "
                       "first_ts=min(coalesce(first_ts, excluded.first_ts), excluded.first_ts), "
                       "last_in=max(coalesce(last_in, excluded.last_in), excluded.last_in)", (ticket_id, gate, ts, ts))
        else:
            db.execute(f"INSERT INTO {uses} (ticket_id, gate, exits, last_out) VALUES (?,?,1,?) "
                       "ON CONFLICT(ticket_id, gate) DO UPDATE SET exits=exits+1, "
                       "last_out=max(coalesce(last_out, excluded.last_out), excluded.last_out)", (ticket_id, gate, ts))
        # the same scan heard twice (a resend) is one passage, not two entries for the entry rules
        db.execute(f"INSERT INTO {passages} (ticket_id, ts, dir, gate, sent_ts) SELECT ?,?,?,?,? WHERE NOT EXISTS "
                   f"(SELECT 1 FROM {passages} WHERE ticket_id=? AND ts=? AND dir=? AND gate=?)",
                   (ticket_id, ts, d, gate, sent, ticket_id, ts, d, gate))
    elif result == "annulled":
        _annul(db, uses, passages, ticket_id, ts if sent_ts is None else sent_ts, gate)


def _annul(db, uses: str, passages: str, ticket_id: str, sent: int, gate: str) -> None:
    """Nobody walked through `gate`'s admission stamped `sent`: it is undone at that gate, and only there."""
    row = db.execute(f"SELECT ts FROM {passages} WHERE ticket_id=? AND gate=? AND dir='in' AND "
                     "coalesce(sent_ts, ts)=? LIMIT 1", (ticket_id, gate, sent)).fetchone()
    ts = row[0] if row else sent
    db.execute(f"DELETE FROM {passages} WHERE ticket_id=? AND gate=? AND dir='in' AND ts=?", (ticket_id, gate, ts))
    cur = db.execute(f"SELECT first_ts, last_in, exits FROM {uses} WHERE ticket_id=? AND gate=?",
                     (ticket_id, gate)).fetchone()
    if cur is None or ts not in (cur[0], cur[1]):
        return
    low, high = db.execute(f"SELECT min(ts), max(ts) FROM {passages} WHERE ticket_id=? AND gate=? AND dir='in'",
                           (ticket_id, gate)).fetchone()
    first = cur[0] if cur[0] != ts else low
    last_in = cur[1] if cur[1] != ts else high
    if first is None and last_in is None and not cur[2]:
        db.execute(f"DELETE FROM {uses} WHERE ticket_id=? AND gate=?", (ticket_id, gate))
    else:
        db.execute(f"UPDATE {uses} SET first_ts=?, last_in=? WHERE ticket_id=? AND gate=?",
                   (first if first is not None else last_in, last_in, ticket_id, gate))
