"""Signed tickets: verify cost per scan, QR symbol size Base45 vs base64, and
issuing 10,000 tickets with a QR PNG each.

    .venv/bin/python bench/bench_signing.py [--issue 10000]
"""

import argparse
import base64
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import segno

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.gt1 import SignedTicketVerifier, b45decode, sign_ticket
from gate.boxoffice.keys import new_keypair
from gate.core.events import Code
from gate.decide import GateRules, decide
from gate.resolve import Resolver
from gate.state.tickets import TicketStore


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--issue", type=int, default=10_000)
    n_issue = ap.parse_args().issue
    key = Ed25519PrivateKey.generate()
    code = sign_ticket(key, "2026-11-23-000123-a1b2", "2026-11-23-eve", "stalls", 1795420800, 1795471200)
    blob = b45decode(code[4:])
    b64 = "GT1:" + base64.b64encode(blob).decode()
    q45, q64 = segno.make_qr(code, error="m"), segno.make_qr(b64, error="m")
    print(f"typical signed code: {len(blob)} bytes -> Base45 {len(code)} chars: QR version {q45.version} "
          f"({q45.mode} mode, {q45.symbol_size(border=0)[0]} modules); base64 {len(b64)} chars: QR version "
          f"{q64.version} ({q64.mode} mode, {q64.symbol_size(border=0)[0]} modules); error correction M")
    with tempfile.TemporaryDirectory() as tmp:
        store = TicketStore(Path(tmp) / "t.db")
        r = Resolver(store, [SignedTicketVerifier([key.public_key()])])
        rules = GateRules("d", frozenset({"2026-11-23-eve"}))
        codes = [sign_ticket(key, f"T{i}", "2026-11-23-eve") for i in range(3000)]
        ts = []
        for c in codes:
            a = time.perf_counter()
            res = r.resolve(Code("qr", c.encode(), c))
            decide(res, store.history(res.ticket.ticket_id), rules, int(time.time() * 1000))
            ts.append((time.perf_counter() - a) * 1000)
        ts.sort()
        print(f"verify + decide per scan: median {statistics.median(ts):.3f} ms, p99 {ts[int(.99 * len(ts))]:.3f} ms")
        kp, _ = new_keypair(tmp, "box")
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "gate.cli", "tickets", "issue", "--key", str(kp), "--event",
                        "2026-11-23-eve", "--count", str(n_issue), "--out", f"{tmp}/out"], check=True,
                       cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        dt = time.monotonic() - t
        pngs = len(list(Path(f"{tmp}/out/qr").glob("*.png")))
        print(f"issuing {n_issue:,} tickets with a QR PNG each: {dt:.1f} s ({n_issue / dt:,.0f} tickets/s, {pngs:,} PNGs)")


if __name__ == "__main__":
    main()
