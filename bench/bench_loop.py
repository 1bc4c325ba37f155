"""Through the real loop (camera thread, bounded hand-off, decode, decide,
feedback thread, outbox) on gpiozero's MockFactory:

- frame arrival -> LED on: the mock pin's change time minus the frame's arrival time;
- CPU of the scan loop at 30 fps, as a share of one core (process CPU time / wall time).

    .venv/bin/python bench/bench_loop.py [--seconds 20]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpiozero.pins.mock import MockFactory

from gate.camera import MemorySource
from gate.config import parse
from gate.core.events import Ticket
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.health import percentile
from gate.state.tickets import TicketStore

CFG = """[gate]\nid = "bench"\nvenue = "hall"\nevents = ["eve"]\n[feedback]\nled_red = 17\nled_green = 27
led_blue = 22\nbuzzer = 23\nrelay = 24\n[mqtt]\nenabled = false\n[storage]\ndir = "{dir}"\n"""


class Recording(MemorySource):
    """Notes when each frame arrived, by the object shown."""

    def __init__(self, frames, fps):
        super().__init__(frames, fps)
        self.arrivals = {}

    def read(self, timeout):
        f = super().read(timeout)
        if f is not None:
            self.arrivals.setdefault(id(f.y), f.t_arrival)
        return f


def edges(pin):
    """Absolute times of the pin's rising edges, rebuilt from MockPin's recorded deltas."""
    times, t = [], pin._last_change
    for st in reversed(pin.states[1:]):
        times.append((t, st.state))
        t -= st.timestamp
    return sorted(t for t, s in times if s)


def run(seconds, fps, every, tmp):
    n_tickets = int(seconds * fps / every) + 2
    store = TicketStore(f"{tmp}/tickets.db")
    store.replace_all([Ticket(f"T{i}", "eve", f"CODE-{i:06d}") for i in range(n_tickets)])
    store.close()
    rng = np.random.default_rng(1)
    empty = compose(None, "empty", rng=rng)
    frames, shown = [], []
    for i in range(int(seconds * fps)):
        if i % every == every // 2:
            k = len(shown)
            code = f"CODE-{k:06d}" if k % 2 == 0 else f"JUNK-{k:06d}"  # ok (green) / unknown (red)
            f = compose(code, "clean", rng=rng)
            shown.append((f, "green" if k % 2 == 0 else "red"))
            frames.append(f)
        else:
            frames.append(empty)
    factory = MockFactory()
    src = Recording(frames, fps)
    s = Scanner(parse(CFG.format(dir=tmp), "bench"), src, pin_factory=factory, connect=False)
    cpu0, wall0 = time.process_time(), time.monotonic()
    s.run()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    rises = {"green": edges(factory.pin(27)), "red": edges(factory.pin(17))}
    lat = []
    for f, colour in shown:
        t0 = src.arrivals.get(id(f))
        after = [t for t in rises[colour] if t >= t0]
        if t0 is not None and after:
            lat.append((after[0] - t0) * 1000)
    return lat, cpu / wall * 100, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lat, _, s = run(args.seconds, 30, 15, tmp)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))]
    print(f"frame arrival -> LED on, {len(lat)} verdicts at 30 fps: median {statistics.median(lat):.2f} ms, "
          f"p95 {p(.95):.2f} ms, p99 {p(.99):.2f} ms, max {lat[-1]:.2f} ms (dropped frames: {s.dropped})")
    with tempfile.TemporaryDirectory() as tmp:
        _, cpu, s = run(args.seconds, 30, 90, tmp)
    print(f"scan loop CPU at 30 fps (a ticket every 3 s, the rest empty frames): {cpu:.1f}% of one core "
          f"({s.processed} frames, decode p50 {percentile(s.decode_ms, .5):.3f} ms, "
          f"p95 {percentile(s.decode_ms, .95):.3f} ms)")


if __name__ == "__main__":
    main()
