"""pretix: down-sync of a large check-in list, and draining a queue of scans after an outage.

Against a real pretix server (the test fixture's: its own venv, SQLite). The upload figure
is a ratio against the anchor the issue names: a bare HTTP client redeeming the same
secrets against the same server in the same run (on a second check-in list of the same
event, so both sides record first check-ins). The two sides run in alternating chunks so
a busy machine slows both alike.

    python bench/bench_pretix.py [--positions 10000] [--scans 5000] [--chunk 250]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gate.boxoffice.keys import new_keypair, new_secret
from gate.boxoffice.pretix_api import PretixClient, iso
from gate.boxoffice.publish import ListPublisher
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house import uploads
from gate.house.pretix_link import build_list
from gate.house.pretix_sync import PretixSync
from tests.pretix_server import PretixServer


def bare_redeem(url: str, org: str, token: str, list_id: int, secrets: list, ts_ms: int) -> float:
    """The anchor: the same calls with nothing around them (one http.client connection, no queue)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    t0 = time.perf_counter()
    for s in secrets:
        body = json.dumps({"secret": s, "lists": [list_id], "nonce": uuid.uuid4().hex, "datetime": iso(ts_ms),
                           "force": True, "type": "entry", "questions_supported": False})
        for attempt in (0, 1):
            try:
                conn.request("POST", f"/api/v1/organizers/{org}/checkinrpc/redeem/", body,
                             {"Authorization": "Token " + token, "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        assert r.status == 201, r.status
    conn.close()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=10_000)
    ap.add_argument("--scans", type=int, default=5_000)
    ap.add_argument("--chunk", type=int, default=250)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pretix-"))
    t0 = time.perf_counter()
    server = PretixServer(work / "pretix")
    server.start()
    print(f"pretix server (cached venv and migrated DB): first answer after {time.perf_counter() - t0:.1f} s")
    try:
        t0 = time.perf_counter()
        made = server.seed({"organizer": "bench", "event": "gala", "bulk": a.positions, "extra_lists": 1})
        print(f"seeding {a.positions:,} positions: {time.perf_counter() - t0:.1f} s", flush=True)
        (work / "token").write_text(made["token"])
        kp, _ = new_keypair(work / "keys", "house")
        sp = new_secret(work / "keys", "venue")
        text = (f'[house]\nvenue = "hall"\n[storage]\ndir = "{work}/house"\n'
                f'[signing]\nlist_signing_key = "{kp}"\nvenue_secret = "{sp}"\n'
                f'[pretix]\nurl = "{server.url}"\norganizer = "bench"\nevent = "gala"\n'
                f'checkin_list = {made["checkin_list"]}\ntoken_file = "{work}/token"\n')
        cfg = parse(text, "bench.toml")
        Path(cfg.storage.dir).mkdir(parents=True)
        sync = PretixSync(cfg, Path(cfg.storage.dir) / "house.db", made["token"])
        t0 = time.perf_counter()
        r = sync.sync()
        t_sync = time.perf_counter() - t0
        t0 = time.perf_counter()
        payload, _, n = build_list(sync, ListPublisher.from_config(cfg, role="house"))
        t_list = time.perf_counter() - t0
        print(f"full sync: {r.positions:,} positions in {t_sync:.1f} s ({r.positions / t_sync:,.0f}/s); "
              f"ticket list of {n:,} built in {t_list:.2f} s ({len(payload) / 1e6:.1f} MB)", flush=True)
        t0 = time.perf_counter()
        r2 = sync.sync()
        print(f"incremental sync, nothing changed: {time.perf_counter() - t0:.2f} s ({r2.changed_orders} orders)")

        # The outage: scans queued while pretix was away, as the house's ingest queues them.
        db = sqlite3.connect(str(Path(cfg.storage.dir) / "house.db"))
        db.executescript("CREATE TABLE IF NOT EXISTS scans (id TEXT PRIMARY KEY, gate TEXT, seq INTEGER, "
                         "ts INTEGER, event TEXT, ticket TEXT, dir TEXT, result TEXT, reason TEXT, "
                         "attention TEXT, received INTEGER);" + uploads.SCHEMA)
        rows = db.execute("SELECT ticket_id, secret FROM pretix_positions ORDER BY id LIMIT ?", (a.scans,)).fetchall()
        now = int(time.time() * 1000) - 3_600_000
        events = [ScanEvent(f"door-a-{i}", "door-a", i + 1, now + i, "gala", tid, "in", "admitted", "ok")
                  for i, (tid, _) in enumerate(rows)]
        with db:
            db.executemany("INSERT INTO scans VALUES (?,?,?,?,?,?,?,?,?,'[]',0)",
                           [(e.id, e.gate, e.seq, e.ts, e.event, e.ticket, e.dir, e.result, e.reason) for e in events])
            uploads.enqueue(db, events)
        db.close()
        up = uploads.Uploader(sync.db, PretixClient(server.url, "bench", made["token"]), "gala", made["checkin_list"])
        secrets = [s for _, s in rows]
        t_bare = t_ours = 0.0
        for i in range(0, len(secrets), a.chunk):
            t_bare += bare_redeem(server.url, "bench", made["token"], made["extra_lists"][0],
                                  secrets[i:i + a.chunk], now)
            t0 = time.perf_counter()
            sent = up.drain(limit=a.chunk)
            t_ours += time.perf_counter() - t0
            assert sent == len(secrets[i:i + a.chunk]), (sent, up.last_error)
        n = len(secrets)
        print(f"uploading {n:,} queued scans: house queue {n / t_ours:,.1f}/s ({t_ours:.1f} s) | "
              f"bare HTTP client, same secrets, same server {n / t_bare:,.1f}/s ({t_bare:.1f} s) | "
              f"ratio {t_bare / t_ours:.2f} (target >= 0.8)", flush=True)
        st = PretixClient(server.url, "bench", made["token"], timeout=300).list_status("gala", made["checkin_list"])
        assert st["checkin_count"] == n, st
        sync.close()
    finally:
        server.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
