"""Signed ticket lists: packing, verifying + applying, lookup by code hash, and what an
apply costs the scan loop, each beside its anchor measured in the same run.

    .venv/bin/python bench/bench_lists.py [--tickets 10000] [--big 100000]

Anchors: lookup by hash vs the old lookup by code (a plain indexed code column, as
the store had it); the loop's worst wait during an apply vs the old single-transaction
swap (BEGIN IMMEDIATE, which also locked the record of use the loop writes to).
"""

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.lists import pack_list
from gate.core.events import Ticket, ticket_from_row
from gate.state.tickets import TicketStore
from gate.state.updater import ListGuard, TicketUpdater

KEY, SECRET = Ed25519PrivateKey.generate(), os.urandom(32)


def tickets(n):
    return [Ticket(f"T{i:07d}", "2026-11-23-eve", f"HALL-{i:07d}-{i * 7919 % 1000003:06d}", holder=f"Patron {i}",
                   seat=f"{chr(65 + i % 20)}{i % 40}", zone="stalls", tags=("member",) if i % 7 == 0 else ())
            for i in range(n)]


def pack(ts, seq):
    return pack_list(ts, signing_key=KEY, secret=SECRET, venue="hall", series="bench", seq=seq)


def us(samples):
    s = sorted(samples)
    return f"median {statistics.median(s):.1f} us, p99 {s[int(.99 * len(s))]:.1f} us"


def lookups(tmp, ts):
    guard = ListGuard("hall", [KEY.public_key()], SECRET)
    store = TicketStore(tmp / "lookup.db")
    TicketUpdater(tmp / "lookup.db", guard=guard).apply(store, pack(ts, 1))
    old = sqlite3.connect(str(tmp / "old.db"), isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE tickets (ticket_id TEXT PRIMARY KEY, code TEXT NOT NULL, event TEXT, holder TEXT)")
    old.execute("CREATE UNIQUE INDEX tickets_code ON tickets(code)")
    old.executemany("INSERT INTO tickets VALUES (?,?,?,?)", ((t.ticket_id, t.code, t.event, t.holder) for t in ts))
    codes = [t.code for t in ts[:: max(1, len(ts) // 5000)]]
    new_t, old_t = [], []
    for _ in range(3):
        for c in codes:
            a = time.perf_counter()
            store.by_code(c)
            b = time.perf_counter()
            r = old.execute("SELECT * FROM tickets WHERE code=?", (c,)).fetchone()
            ticket_from_row((*r, "", "", None, None, "valid", "", "", ""))
            new_t.append((b - a) * 1e6)
            old_t.append((time.perf_counter() - b) * 1e6)
    print(f"lookup by code hash (HMAC + index, {len(ts):,} in store): {us(new_t)}")
    print(f"  anchor, old lookup by code (plain indexed column, same Ticket built): {us(old_t)}")
    store.close()
    old.close()


class OldSwapStore(TicketStore):
    """The store as it swapped before: BEGIN IMMEDIATE (locks every attached file)."""

    def swap(self, rows, revoked, key, version=None, meta=None):
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM tickets")
            db.execute("DELETE FROM revoked")
            db.executemany("INSERT INTO tickets VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("INSERT OR IGNORE INTO revoked VALUES (?)", ((r,) for r in revoked))
            for k, v in {"code_key": key.hex(), **(meta or {})}.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, str(v)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return 1


def loop_during_apply(tmp, payload, writer_cls, name):
    """A loop that scans (snapshot reads) and records an admission every ~2 ms while a list applies."""
    d = tmp / name
    d.mkdir()
    loop = TicketStore(d / "tickets.db")
    loop.replace_all(tickets(10))
    writer = writer_cls(d / "tickets.db")
    upd = TicketUpdater(d / "tickets.db", guard=ListGuard("hall", [KEY.public_key()], SECRET))
    waits, stop = [], threading.Event()

    def scan_loop():
        code = tickets(1)[0].code
        while not stop.is_set():
            a = time.perf_counter()
            with loop.snapshot():
                t = loop.by_code(code)
                loop.history(t.ticket_id)
            loop.record(t.ticket_id, "admitted", 1, "door-a")
            waits.append((time.perf_counter() - a) * 1000)
            time.sleep(0.002)
    th = threading.Thread(target=scan_loop)
    th.start()
    time.sleep(0.05)
    a = time.perf_counter()
    assert upd.apply(writer, payload)
    took = time.perf_counter() - a
    stop.set()
    th.join()
    w = sorted(waits)
    loop.close()
    writer.close()
    return took, w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for n in (args.tickets, args.big):
            ts = tickets(n)
            a = time.perf_counter()
            payload = pack(ts, 1)
            packed = time.perf_counter() - a
            store = TicketStore(tmp / f"apply-{n}.db")
            upd = TicketUpdater(tmp / f"apply-{n}.db", guard=ListGuard("hall", [KEY.public_key()], SECRET))
            a = time.perf_counter()
            assert upd.apply(store, payload)
            applied = time.perf_counter() - a
            store.close()
            b = time.perf_counter()
            TicketStore(tmp / f"local-{n}.db").replace_all(ts)
            local = time.perf_counter() - b
            print(f"{n:,} tickets: pack+sign {packed:.2f} s, {len(payload) / 1e6:.2f} MB on the bus; "
                  f"verify+decrypt+apply {applied:.2f} s  (anchor: local swap of the same tickets {local:.2f} s)")
        lookups(tmp, tickets(args.big))
        payload = pack(tickets(args.big), 2)
        took, w = loop_during_apply(tmp, payload, TicketStore, "now")
        print(f"scan loop while a {args.big:,}-ticket list applies ({took:.2f} s): {len(w)} scans, "
              f"median {statistics.median(w):.2f} ms, worst {w[-1]:.1f} ms")
        took, w = loop_during_apply(tmp, payload, OldSwapStore, "old")
        print(f"  anchor, the old swap (BEGIN IMMEDIATE) ({took:.2f} s): {len(w)} scans, "
              f"median {statistics.median(w):.2f} ms, worst {w[-1]:.1f} ms")


if __name__ == "__main__":
    main()
