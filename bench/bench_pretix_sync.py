"""pretix, the bounded link: a full sync of 10,000 positions and an upload of 1,000 queued scans,
each against a bare paged HTTP client doing the same against the same REAL pretix in the same run.

- sync: the real house (`gate house -c FILE`, its own process, with a private Mosquitto) syncs
  from scratch: pages into SQLite, the guard, the signed ticket list published. Its time is the
  house's own figure (`/api/house` pretix.last_sync_s: pretix's first answer to the list on the
  bus); the anchor is a bare http.client loop that GETs the same positions pages and parses them.
  The two alternate for `--rounds` rounds (a fresh house database each time) and the medians are
  compared, since a shared machine's load moves pretix's own answer times by a third between runs.
  Peak RSS of the house process (VmHWM) is read once each sync is done; the largest is reported.
- upload: 1,000 scans queued as the house's ingest queues them, drained by the house's own
  uploader; the anchor is a bare http.client loop redeeming the same secrets on a second
  check-in list of the same event. The two run in alternating chunks, each going first in turn,
  so a busy machine (and pretix slowing as its check-ins grow) slows both alike.

    python bench/bench_pretix_sync.py [--positions 10000] [--scans 1000] [--chunk 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_pretix import bare_redeem
from gate.boxoffice.keys import new_keypair, new_secret
from gate.boxoffice.pretix_api import PretixClient
from gate.bus.broker import PrivateBroker, free_port
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house import uploads
from tests.pretix_server import PretixServer

TARGET_RATIO = 1.2
TARGET_RSS_MB = 80


def bare_sync(url: str, org: str, event: str, list_id: int, token: str) -> tuple[float, int]:
    """The anchor: every positions page, fetched and parsed, with nothing around it."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    t0 = time.perf_counter()
    n, page = 0, 1
    while True:
        conn.request("GET", f"/api/v1/organizers/{org}/events/{event}/checkinlists/{list_id}/positions/"
                            f"?ignore_status=true&page={page}", headers={"Authorization": "Token " + token})
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 200, r.status
        n += len(body["results"])
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        if not body.get("next"):
            break
        page += 1
    conn.close()
    return time.perf_counter() - t0, n


def api(listen: str) -> dict:
    with urllib.request.urlopen(f"http://{listen}/api/house", timeout=10) as r:
        return json.load(r)


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def house_sync(cfg_path: Path, listen: str, want: int, log: Path) -> tuple[float, float]:
    """(the house's own sync time, its peak RSS in MB) for one full sync in a fresh house process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), GPIOZERO_PIN_FACTORY="mock")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(cfg_path)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        end = time.monotonic() + 1800
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"the house exited ({proc.returncode}); see {log}")
            try:
                p = api(listen).get("pretix", {})
            except OSError:
                p = {}
            if p.get("last_sync_s") is not None:
                assert p["positions"] == want and not p["held"], p
                return p["last_sync_s"], vm_hwm_mb(proc.pid)
            if p.get("sync_error"):
                raise RuntimeError(p["sync_error"])
            time.sleep(0.2)
        raise RuntimeError("the house's sync did not finish")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=10_000)
    ap.add_argument("--scans", type=int, default=1_000)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pretix-sync-"))
    server = PretixServer(work / "pretix")
    server.start()
    broker = PrivateBroker(work / "broker").start()
    try:
        t0 = time.perf_counter()
        made = server.seed({"organizer": "bench", "event": "gala", "bulk": a.positions, "extra_lists": 1})
        print(f"seeding {a.positions:,} positions: {time.perf_counter() - t0:.1f} s", flush=True)
        (work / "token").write_text(made["token"])
        kp, _ = new_keypair(work / "keys", "house")
        sp = new_secret(work / "keys", "venue")
        listen = f"127.0.0.1:{free_port()}"
        text = (f'[house]\nvenue = "hall"\nlisten = "{listen}"\n[storage]\ndir = "{work}/house"\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                f'[signing]\nlist_signing_key = "{kp}"\nvenue_secret = "{sp}"\n'
                f'[pretix]\nurl = "{server.url}"\norganizer = "bench"\nevent = "gala"\n'
                f'checkin_list = {made["checkin_list"]}\ntoken_file = "{work}/token"\nsync_every_s = 86400\n'
                f'timeout_s = 60\n')
        cfg_path = work / "house.toml"
        cfg_path.write_text(text)
        cfg = parse(text, str(cfg_path))
        lid = made["checkin_list"]

        # -- the sync ------------------------------------------------------------------
        bares, houses, rss = [], [], 0.0
        for i in range(a.rounds):
            t, n = bare_sync(server.url, "bench", "gala", lid, made["token"])
            assert n == a.positions, n
            bares.append(t)
            shutil.rmtree(work / "house", ignore_errors=True)      # a house syncing from scratch
            t, peak = house_sync(cfg_path, listen, a.positions, work / "house.log")
            houses.append(t)
            rss = max(rss, peak)
            print(f"  round {i + 1}: bare {bares[-1]:.1f} s, house {t:.1f} s, house peak RSS {peak:.1f} MB", flush=True)
        ratio = statistics.median(houses) / statistics.median(bares)
        print(f"full sync of {a.positions:,} positions: house {statistics.median(houses):.1f} s (median; to the "
              f"signed list on the bus) | bare paged http.client {statistics.median(bares):.1f} s (median) | "
              f"ratio {ratio:.2f} (target <= {TARGET_RATIO})", flush=True)
        print(f"peak RSS of the house process through that sync: {rss:.1f} MB (target <= {TARGET_RSS_MB} MB)",
              flush=True)

        # -- the upload ----------------------------------------------------------------
        db = sqlite3.connect(str(Path(cfg.storage.dir) / "house.db"))
        rows = db.execute("SELECT ticket_id, secret FROM pretix_positions ORDER BY id LIMIT ?", (a.scans,)).fetchall()
        now = int(time.time() * 1000) - 3_600_000
        events = [ScanEvent(f"bench-{i}", "door-a", i + 1, now + i, "gala", tid, "in", "admitted", "ok")
                  for i, (tid, _) in enumerate(rows)]
        with db:
            db.executemany("INSERT INTO scans (id, gate, seq, ts, event, ticket, dir, result, reason, attention, "
                           "received) VALUES (?,?,?,?,?,?,?,?,?,'[]',0)",
                           [(e.id, e.gate, e.seq, e.ts, e.event, e.ticket, e.dir, e.result, e.reason)
                            for e in events])
            uploads.enqueue(db, events)
        up = uploads.Uploader(db, PretixClient(server.url, "bench", made["token"], 60), "gala", lid)
        secrets = [s for _, s in rows]
        t_bare = t_ours = 0.0

        def bare(chunk: list) -> float:
            return bare_redeem(server.url, "bench", made["token"], made["extra_lists"][0], chunk, now)

        def ours(chunk: list) -> float:
            t0 = time.perf_counter()
            sent = up.drain(limit=len(chunk))
            assert sent == len(chunk), (sent, up.last_error)
            return time.perf_counter() - t0
        for k, i in enumerate(range(0, len(secrets), a.chunk)):
            chunk = secrets[i:i + a.chunk]
            # who goes first alternates: pretix slows as its check-ins grow, and the second would pay for it
            if k % 2:
                t_ours += ours(chunk)
                t_bare += bare(chunk)
            else:
                t_bare += bare(chunk)
                t_ours += ours(chunk)
        n = len(secrets)
        print(f"upload of {n:,} queued scans: house queue {t_ours:.1f} s ({n / t_ours:,.1f}/s) | bare http.client "
              f"{t_bare:.1f} s ({n / t_bare:,.1f}/s) | ratio {t_ours / t_bare:.2f} (target <= {TARGET_RATIO})",
              flush=True)
        st = PretixClient(server.url, "bench", made["token"], timeout=300).list_status("gala", lid)
        assert st["checkin_count"] == n, st
        db.close()
    finally:
        broker.stop()
        server.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
