"""The house's ingest rate with door flow and alerts on, as a share of a bare paho client draining
the same queued events through the same broker, in the same run.

Each holds a persistent session on one private Mosquitto. Each round a publisher (another process)
queues N scan events from GATES gates while all are away; then each drains its copy: the bare
client only counts what paho hands it (and acknowledges it); the house (gate/house/build.py, with
its ticket list, curtain, flow, watch and alerts running) stores every event in its attendance
log, acknowledges it after the commit and counts it; a third client, the project's own
(gate/bus/client.py: paho reading the socket in chunks), only counts too, to show what the house's
own work costs beside the reads it shares with it. The order alternates round by round; the share
is the median of the rounds' shares (each round's house against that round's bare client). Each
gate's admissions are stamped a second apart (what one lane can pass), ending now, and one in ten asks
for attention, so arrivals reach the alerts (rate-bound) as they
would on a busy night.

    .venv/bin/python bench/bench_house_flow.py [--events 20000] [--rounds 3]   (the README: 40000, 5)
"""

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gate.boxoffice.keys import new_keypair, new_secret
from gate.bus.broker import PrivateBroker, free_port
from gate.bus.client import Client as GateClient
from gate.config import parse
from gate.house.build import build_house

TARGET = 0.85
GATES = 20

PUBLISHER = r"""
import sys, time
import paho.mqtt.client as mqtt
sys.path.insert(0, sys.argv[4])
from gate.core.events import ScanEvent
from gate.bus.codec import pack_scan
port, n, rnd, gates, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-doors-{rnd}")
c.max_inflight_messages_set(1000)
acked = [0]
c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
c.connect("127.0.0.1", port)
c.loop_start()
per = n // gates
# each round's stamps a second apart on each lane, the rounds one after another, the last ending now
now = int(time.time() * 1000) - (rounds - 1 - rnd) * per * 1000
msgs = []
for g in range(gates):
    gate = f"door-{g}"
    for i in range(per):
        seq = rnd * per + i + 1
        e = ScanEvent(f"{gate}-{seq}", gate, seq, now - (per - i) * 1000, "eve", f"R{rnd}-G{g}-T{i}", "in",
                      "admitted", "ok", attention=["member"] if i % 10 == 0 else [])
        msgs.append((f"gate/hall/{gate}/scan", pack_scan(e)))
for topic, p in msgs:
    c.publish(topic, p, qos=1)
while acked[0] < len(msgs):
    time.sleep(0.01)
c.disconnect(); c.loop_stop()
"""


class Bare:
    """A paho client with a persistent session that only counts what it is handed (and paho acknowledges).
    `cls`: paho's own client (the anchor), or the project's (gate/bus/client.py: chunked reads, the same
    paho otherwise), to show what the house's own work costs beside the reads it shares with it."""

    def __init__(self, port: int, cls=mqtt.Client, client_id: str = "bench-bare"):
        self.port, self.cls, self.client_id = port, cls, client_id
        self.count = 0
        self.done = threading.Event()
        self.want = 0

    def _client(self):
        c = self.cls(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        c.on_connect = lambda c, u, f, rc, p: c.subscribe("gate/hall/+/scan", qos=1)
        c.on_message = self._on_message
        return c

    def _on_message(self, c, u, msg):
        self.count += 1
        if self.count == 1:
            self.first = time.monotonic()
        if self.count >= self.want:
            self.done.set()

    def subscribe_once(self) -> None:
        c = self._client()
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        time.sleep(0.5)
        c.disconnect()
        c.loop_stop()

    def drain(self, n: int) -> float:
        """Seconds from the first message handed over to the n-th."""
        self.count, self.want = 0, n
        self.done.clear()
        c = self._client()
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        if not self.done.wait(300):
            raise RuntimeError(f"bare client got {self.count} of {n}")
        dt = time.monotonic() - self.first
        c.disconnect()
        c.loop_stop()
        return dt


def house_drain(cfg, n: int) -> float:
    """Seconds from the house's first new event counted to its n-th (starting it, which re-reads the
    retained ticket list, is not timed: the bare client's connecting is not either)."""
    house = build_house(cfg)
    base = house.state.counts.seen
    house.start(settle_heap=True)   # as `gate house` starts it
    t0 = time.monotonic()
    first = None
    try:
        while house.state.counts.seen < base + n:
            if first is None and house.state.counts.seen > base:
                first = (time.monotonic(), house.state.counts.seen - base)
            time.sleep(0.001)
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"house counted {house.state.counts.seen - base} of {n}")
        if first is None:
            return 0.0
        # the events counted before the first look took no measured time: scale to all n
        return (time.monotonic() - first[0]) * n / max(1, n - first[1])
    finally:
        house.close()
        # `gate house` is a process of its own; here each round builds another house in this one. A house
        # started with settle_heap freezes what it counted (gate/house/watch.py): let it go with the house, as
        # its process exit would, or every later round runs beside the frozen remains of all the earlier ones.
        gc.unfreeze()
        gc.collect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.events // GATES * GATES
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateBroker(Path(tmp) / "broker").start()
        key, _ = new_keypair(Path(tmp) / "keys", "house")
        secret = new_secret(Path(tmp) / "keys", "venue")
        curtain = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 1800))
        import dataclasses

        from gate.config.house import HouseSection
        has_flow = "curtain" in {f.name for f in dataclasses.fields(HouseSection)}   # run on a house without: today's
        cfg = parse(f'[house]\nvenue="hall"\nlisten="127.0.0.1:{free_port()}"\nclient_id="house-bench"\n'
                    f'capacity = {{ "eve" = 1000000 }}\n' + (f'curtain = {{ "eve" = "{curtain}" }}\n' if has_flow else "") +
                    f'[mqtt]\nhost="127.0.0.1"\nport={broker.port}\n[storage]\ndir="{tmp}/house"\n'
                    f'[signing]\nlist_signing_key = "{key}"\nvenue_secret = "{secret}"\n', "bench")
        # The ticket list, so the flow knows who is expected (every ticket of every round).
        from gate.boxoffice.publish import ListPublisher
        from gate.core.events import Ticket
        box = ListPublisher.from_config(cfg, role="house")
        per = n // GATES
        box.publish(box.pack([Ticket(f"R{r}-G{g}-T{i}", "eve", f"C{r}-{g}-{i}", f"Guest {i}")
                              for r in range(args.rounds) for g in range(GATES) for i in range(per)]))
        bare = Bare(broker.port)
        bare.subscribe_once()
        chunked = Bare(broker.port, GateClient, "bench-chunked")
        chunked.subscribe_once()
        house_drain(cfg, 0)   # the house's session exists (and it has applied the list) before anything is queued
        bare_s, house_s, chunked_s = [], [], []
        for rnd in range(args.rounds):
            subprocess.run([sys.executable, "-c", PUBLISHER, str(broker.port), str(n), str(rnd), str(ROOT), str(GATES),
                            str(args.rounds)], check=True)
            if rnd % 2 == 0:
                bare_s.append(bare.drain(n))
                house_s.append(house_drain(cfg, n))
                chunked_s.append(chunked.drain(n))
            else:
                chunked_s.append(chunked.drain(n))
                house_s.append(house_drain(cfg, n))
                bare_s.append(bare.drain(n))
            print(f"round {rnd + 1}: bare paho {n / bare_s[-1]:,.0f} events/s, house {n / house_s[-1]:,.0f} events/s "
                  f"({bare_s[-1] / house_s[-1]:.0%}); the project's client alone {n / chunked_s[-1]:,.0f} events/s",
                  flush=True)
        b, h, k = statistics.median(bare_s), statistics.median(house_s), statistics.median(chunked_s)
        # Paired: each round's house against the bare client of the same round (they run back to back, while
        # this shared machine's speed drifts by a third between rounds); the medians of each alone beside it.
        share = statistics.median(bs / hs for bs, hs in zip(bare_s, house_s))
        what = "house with flow and alerts" if has_flow else "house without flow or alerts (as it was)"
        print(f"\nmedian over {args.rounds} rounds of {n:,} queued events: bare paho {n / b:,.0f} events/s, "
              f"{what} {n / h:,.0f} events/s")
        print(f"house / bare paho, the median of the rounds' shares = {share:.0%}   "
              f"(target >= {TARGET:.0%}: {'met' if share >= TARGET else 'NOT met'}); "
              f"the median rates' share: {b / h:.0%}")
        print(f"the project's client alone (chunked reads, nothing done with what it is handed): {n / k:,.0f} events/s; "
              f"house / it = {k / h:.0%} (what the house's own work leaves of the reads it shares)")
        broker.stop()


if __name__ == "__main__":
    main()
