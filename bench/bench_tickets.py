"""Importing 100,000 tickets (CSV read + validation + SQLite swap) and one lookup.

    .venv/bin/python bench/bench_tickets.py [--tickets 100000]
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gate.boxoffice.ticketfile import read_ticket_file
from gate.state.tickets import TicketStore


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=100_000)
    n = ap.parse_args().tickets
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "tickets.csv"
        with open(csv, "w") as f:
            f.write("ticket_id,code,event,holder,seat,zone,tags,valid_until\n")
            for i in range(n):
                f.write(f"T{i:07d},HALL-{i:07d}-{rng.getrandbits(48):012x},2026-11-23-eve,Patron {i},"
                        f"{chr(65 + i % 20)}{i % 40},stalls,{'member' if i % 7 == 0 else ''},2026-11-24T02:00:00+00:00\n")
        t0 = time.perf_counter()
        tickets = read_ticket_file(csv)
        t1 = time.perf_counter()
        store = TicketStore(Path(tmp) / "s.db")
        store.replace_all(tickets)
        t2 = time.perf_counter()
        print(f"import {n:,} tickets: {t2 - t0:.2f} s (read+validate {t1 - t0:.2f} s, SQLite swap {t2 - t1:.2f} s)")
        codes = [t.code for t in rng.sample(tickets, 20000)]
        for c in codes[:1000]:
            store.by_code(c)
        ts = []
        for c in codes:
            a = time.perf_counter()
            store.by_code(c)
            ts.append((time.perf_counter() - a) * 1e6)
        ts.sort()
        print(f"lookup by code ({n:,} in store): median {statistics.median(ts):.1f} us, p99 {ts[int(.99 * len(ts))]:.1f} us")
        ts = []
        for c in codes:
            a = time.perf_counter()
            t = store.by_code(c)
            store.history(t.ticket_id)
            ts.append((time.perf_counter() - a) * 1e6)
        ts.sort()
        print(f"lookup + history (what a scan reads): median {statistics.median(ts):.1f} us, p99 {ts[int(.99 * len(ts))]:.1f} us")


if __name__ == "__main__":
    main()
