"""Decode cost per 640x480 grey frame, per engine, code frames and empty frames
separately, plus how often each kind is read (live pipeline and still image).

    .venv/bin/python bench/bench_decode.py [--frames N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gate.decode import Decoder
from gate.sim.render import KINDS, compose


def pct(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    sets = {}
    for kind in KINDS:
        for sym in ("qr", "code128"):
            if kind == "empty" and sym == "code128":
                continue
            codes = [f"T-{i:06d}-{rng.integers(1e8):08d}" for i in range(args.frames)]
            frames = [compose(c, kind, symbology=sym, rng=rng) for c in codes]  # held in memory
            sets[(kind, sym)] = (codes, frames)
    print(f"decode per 640x480 frame, QR+Code128 enabled, {args.frames} frames per row")
    print(f"{'engine':<6} {'kind':<13} {'symbol':<8} {'median ms':>9} {'p95 ms':>8} {'live read':>9} {'still read':>10}")
    summary = {}
    for engine in ("zxing", "zbar"):
        code_ms, empty_ms = [], []
        for (kind, sym), (codes, frames) in sets.items():
            d = Decoder(("qr", "code128"), engine, full_every=4)
            for f in frames[:5]:
                d.frame(f)  # warm up
            ts, ok = [], 0
            for code, f in zip(codes, frames):
                t = time.perf_counter()
                got = d.frame(f)
                ts.append((time.perf_counter() - t) * 1000)
                ok += any(c.text == code for c in got)
            (empty_ms if kind == "empty" else code_ms).extend(ts)
            still = sum(any(c.text == code for c in d.still(f)) for code, f in zip(codes, frames))
            n = len(frames)
            live = "-" if kind == "empty" else f"{ok}/{n}"
            st = "-" if kind == "empty" else f"{still}/{n}"
            print(f"{engine:<6} {kind:<13} {sym:<8} {statistics.median(ts):9.3f} {pct(ts, .95):8.3f} {live:>9} {st:>10}")
        summary[engine] = (statistics.median(code_ms), pct(code_ms, .95), statistics.median(empty_ms), pct(empty_ms, .95))
    print()
    for engine, (cm, cp, em, ep) in summary.items():
        print(f"{engine}: code frames median {cm:.3f} ms (p95 {cp:.3f}); empty frames median {em:.3f} ms (p95 {ep:.3f})")


if __name__ == "__main__":
    main()
