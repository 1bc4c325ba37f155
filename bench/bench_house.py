"""House ingest through Mosquitto: a publisher in a separate process sends N scan
events (QoS 1); we time from the first counted event to the last.

    .venv/bin/python bench/bench_house.py [--events 50000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gate.bus.broker import PrivateBroker, free_port
from gate.config import parse
from gate.house.build import build_house

PUBLISHER = r"""
import sys, time, uuid
import paho.mqtt.client as mqtt
sys.path.insert(0, sys.argv[3])
from gate.core.events import ScanEvent
from gate.bus.codec import pack_scan
port, n = int(sys.argv[1]), int(sys.argv[2])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-door")
c.max_inflight_messages_set(1000)
acked = [0]
c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
c.connect("127.0.0.1", port)
c.loop_start()
now = int(time.time() * 1000)
# stamped a second apart, as one lane passes them (faster, the house flags them implausible: gate/core/lane.py)
payloads = [pack_scan(ScanEvent(uuid.uuid4().hex, "bench-door", i + 1, now - (n - i) * 1000, "eve", f"T{i}", "in",
                                "admitted", "ok")) for i in range(n)]
t = time.monotonic()
for p in payloads:
    c.publish("gate/hall/bench-door/scan", p, qos=1)
while acked[0] < n:
    time.sleep(0.01)
print(f"publisher: {n} events acknowledged by the broker in {time.monotonic() - t:.2f} s", flush=True)
c.disconnect(); c.loop_stop()
"""


def rate(svc, total, start_publisher):
    """(events counted after the first one, seconds) until the house has counted `total`."""
    proc = start_publisher() if start_publisher else None
    first, base = None, svc.state.counts.seen   # events restored from the database are not ingest
    while svc.state.counts.seen < total:
        if svc.state.counts.seen > base and first is None:
            first = (time.monotonic(), svc.state.counts.seen)
        time.sleep(0.002)
    end = time.monotonic()
    if proc:
        proc.wait()
    return total - first[1], end - first[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    n = ap.parse_args().events
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateBroker(Path(tmp) / "broker").start()
        listen = f"127.0.0.1:{free_port()}"
        cfg = parse(f'[house]\nvenue="hall"\nlisten="{listen}"\nclient_id="house-bench"\n'
                    f'[mqtt]\nhost="127.0.0.1"\nport={broker.port}\n[storage]\ndir="{tmp}/house"\n', "bench")
        # Live: house and publisher run together (the publisher's own speed bounds this).
        svc = build_house(cfg)
        svc.start()
        svc.connected.wait(10)
        live = rate(svc, n, lambda: subprocess.Popen([sys.executable, "-c", PUBLISHER, str(broker.port), str(n), str(ROOT)]))
        print(f"live: {live[0]:,} events in {live[1]:.2f} s = {live[0] / live[1]:,.0f} events/s "
              f"(publisher and house sharing the 2 cores)")
        svc.close()
        # Backlog: the house is down while the publisher sends; the broker keeps the house's
        # persistent session; then the house starts and takes it all in.
        subprocess.run([sys.executable, "-c", PUBLISHER.replace("bench-door", "bench-door2").replace("f\"T{i}\"", "f\"U{i}\""),
                        str(broker.port), str(n), str(ROOT)], check=True)
        svc = build_house(cfg)
        svc.start()
        got, dt = rate(svc, 2 * n, None)
        print(f"house ingest: {got:,} events in {dt:.2f} s = {got / dt:,.0f} events/s sustained "
              f"(stored in SQLite, acknowledged after commit, counted)")
        with urllib.request.urlopen(f"http://{listen}/api/house") as r:
            admitted = json.load(r)["events"][0]["admitted"]
        print(f"/api/house admitted = {admitted:,} (expected {2 * n:,})")
        svc.close()
        broker.stop()


if __name__ == "__main__":
    main()
