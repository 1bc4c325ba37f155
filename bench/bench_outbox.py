"""The outbox: its cost on the scan path per event, and draining 10,000 buffered
events after the broker returns.

    .venv/bin/python bench/bench_outbox.py
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gate.bus.broker import PrivateBroker
from gate.config import parse
from gate.link import GateLink
from gate.state.outbox import Outbox


def cost(outbox, result, n=2000):
    ts = []
    for i in range(n):
        a = time.perf_counter()
        outbox.append("bench", int(time.time() * 1000), "eve", f"T{i}", "in", result, "ok" if result == "admitted" else "unknown")
        ts.append((time.perf_counter() - a) * 1000)
    ts.sort()
    return statistics.median(ts), ts[int(.99 * len(ts))]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ob = Outbox(Path(tmp) / "cost.db")
        m, p = cost(ob, "admitted")
        print(f"outbox append, admitted (full fsync before the relay opens): median {m:.3f} ms, p99 {p:.3f} ms")
        m, p = cost(ob, "rejected")
        print(f"outbox append, rejected (normal sync): median {m:.3f} ms, p99 {p:.3f} ms")
        broker = PrivateBroker(Path(tmp) / "broker").start()
        cfg = parse(f'[gate]\nid="bench"\nvenue="hall"\n[mqtt]\nhost="127.0.0.1"\nport={broker.port}\n'
                    f'[storage]\ndir="{tmp}"\n', "bench")
        path = Path(tmp) / "outbox.db"
        ob = Outbox(path)
        port = broker.port
        broker.stop()
        for i in range(10_000):
            ob.append("bench", int(time.time() * 1000), "eve", f"T{i}", "in", "admitted", "ok")
        link = GateLink(cfg, path, profile="turnstile")
        link.start()
        broker = PrivateBroker(Path(tmp) / "broker", port=port).start()
        t0 = time.monotonic()
        link.connected.wait(30)
        t1 = time.monotonic()
        while ob.depth():
            time.sleep(0.01)
        t2 = time.monotonic()
        print(f"drain of 10,000 buffered events after the broker returned: {t2 - t0:.2f} s "
              f"(reconnect {t1 - t0:.2f} s + sending and acknowledgement {t2 - t1:.2f} s)")
        link.close()
        broker.stop()


if __name__ == "__main__":
    main()
