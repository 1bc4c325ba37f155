"""Hard tickets: read rate per kind for the live pipeline (a held ticket, frames
in sequence), a still image (`gate decode`'s path), raw zxing-cpp with its
default settings and pyzbar, side by side; then the live pipeline's cost per
frame next to raw zxing-cpp's, in the same run.

Scenes come from gate.scenes (own Code128 encoder, per-pixel warps), not from
the renderer the unit tests use.

    .venv/bin/python bench/bench_hard.py [--n 12] [--frames 8] [--kinds a,b] [--speed-rounds 5]

live:      Decoder.frame() over the presentation's frames in order; read if any
           frame yields the code (what the door needs: one verdict per patron).
still:     Decoder.still() on the presentation's first frame.
zxing/zbar: the raw engine on the first frame; "held" columns: on any frame.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gate import scenes  # noqa: E402
from gate.decode import Decoder  # noqa: E402
from gate.render import compose  # noqa: E402


def pct(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def raw_zxing(img):
    import zxingcpp
    return [r.text for r in zxingcpp.read_barcodes(img)]


def raw_zbar(img):
    from pyzbar import pyzbar
    h, w = img.shape
    return [r.data.decode("utf-8", "replace") for r in pyzbar.decode((np.ascontiguousarray(img).tobytes(), w, h))]


def read_rates(kinds, n, frames, seed):
    rng = np.random.default_rng(seed)
    cols = ("live", "still", "zxing", "zxing held", "zbar", "zbar held")
    print(f"read rate per kind, {n} presentations x {frames} frames, 640x480 grey")
    print(f"{'kind':<15}" + "".join(f"{c:>11}" for c in cols) + f"{'wrong':>7}{'live ms':>9}")
    totals = {c: 0 for c in cols}
    for kind in kinds:
        got = {c: 0 for c in cols}
        wrong, ms = 0, []
        for i in range(n):
            text = f"T-{rng.integers(1e6):06d}-{rng.integers(1e8):08d}"
            pres = scenes.present(kind, text, rng)
            imgs = [pres.frame(k) for k in range(frames)]
            d = Decoder(("qr", "code128"), "zxing")
            seen = set()
            for img in imgs:
                t = time.perf_counter()
                seen |= {c.text for c in d.frame(img)}
                ms.append((time.perf_counter() - t) * 1000)
            got["live"] += text in seen
            wrong += bool(seen - {text})
            still = {c.text for c in Decoder(("qr", "code128"), "zxing").still(imgs[0])}
            got["still"] += text in still
            wrong += bool(still - {text})
            zx = [raw_zxing(img) for img in imgs]
            zb = [raw_zbar(img) for img in imgs]
            got["zxing"] += text in zx[0]
            got["zxing held"] += any(text in z for z in zx)
            got["zbar"] += text in zb[0]
            got["zbar held"] += any(text in z for z in zb)
        for c in cols:
            totals[c] += got[c]
        print(f"{kind:<15}" + "".join(f"{got[c]:>8}/{n:<2}" for c in cols)
              + f"{wrong:>7}{statistics.median(ms):>9.2f}")
    t = n * len(kinds)
    print(f"{'all':<15}" + "".join(f"{totals[c] * 100 / t:>10.0f}%" for c in cols))


def speed(rounds, count, seed):
    """Live pipeline vs raw zxing-cpp (default settings) per frame, empty and code frames."""
    rng = np.random.default_rng(seed)
    empty = [np.clip(scenes.background((640, 480), rng) + rng.normal(0, 2, (480, 640)), 0, 255).astype(np.uint8)
             for _ in range(count)]
    code = [compose(f"T-{i:06d}-{rng.integers(1e8):08d}", kind, symbology=sym, rng=rng)
            for i in range(count // 4) for kind in ("clean", "tilted") for sym in ("qr", "code128")]
    res = {}
    for name, frames in (("empty", empty), ("code", code)):
        for who in ("live", "zxing"):
            meds, all_ms = [], []
            for _ in range(rounds):
                d = Decoder(("qr", "code128"), "zxing")
                ms = []
                for f in frames:
                    t = time.perf_counter()
                    d.frame(f) if who == "live" else raw_zxing(f)
                    ms.append((time.perf_counter() - t) * 1000)
                meds.append(statistics.median(ms))
                all_ms += ms
            res[(name, who)] = (statistics.median(meds), min(meds), max(meds), pct(all_ms, 0.99))
    print(f"\ncost per 640x480 frame, {rounds} rounds x {count} frames; median of round medians (range), p99 of all")
    print(f"{'frames':<7}{'live median':>12}{'range':>15}{'p99':>8}{'zxing median':>14}{'p99':>8}{'zxing/live':>12}")
    for name in ("empty", "code"):
        lm, lo, hi, lp = res[(name, "live")]
        zm, _, _, zp = res[(name, "zxing")]
        print(f"{name:<7}{lm:>10.3f}ms{f'{lo:.3f}-{hi:.3f}':>15}{lp:>8.3f}{zm:>12.3f}ms{zp:>8.3f}{zm / lm:>11.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12, help="presentations per kind")
    ap.add_argument("--frames", type=int, default=8, help="frames per presentation")
    ap.add_argument("--kinds", default=",".join(scenes.KINDS))
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--speed-rounds", type=int, default=5)
    ap.add_argument("--speed-frames", type=int, default=200)
    args = ap.parse_args()
    if args.n:
        read_rates(args.kinds.split(","), args.n, args.frames, args.seed)
    if args.speed_rounds:
        speed(args.speed_rounds, args.speed_frames, args.seed)


if __name__ == "__main__":
    main()
