"""A gate in a child process: appends admissions to its real outbox at a steady
rate while its real MQTT link drains it. Prints each ticket once durable, so a
test that SIGKILLs it knows exactly what must reach the house.

usage: python -m tests.gate_burst CONFIG FIRST COUNT RATE [hold]
(hold: stay connected once drained, until killed; a test that kills it mid-life needs it alive)
"""

import sys
import time
from pathlib import Path

from gate.config import load
from gate.link import GateLink
from gate.state.outbox import Outbox


def main():
    cfg = load(sys.argv[1])
    first, count, rate = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    path = Path(cfg.storage.dir) / "outbox.db"
    outbox = Outbox(path)
    link = GateLink(cfg, path, profile="turnstile")
    link.start()
    # Stamped a second apart from an hour ago, as a lane passes them: appended far faster than any lane
    # could, they would be judged implausible (gate/core/lane.py) and not counted.
    base = int(time.time() * 1000) - 3_600_000
    for i in range(first, first + count):
        outbox.append(cfg.gate.id, base + i * 1000, "eve", f"T{i}", "in", "admitted", "ok")
        print(f"T{i}", flush=True)
        if rate:
            time.sleep(1 / rate)
    while outbox.depth():
        time.sleep(0.05)
    print("drained", flush=True)
    if sys.argv[5:] == ["hold"]:
        while True:
            time.sleep(60)
    link.close()


if __name__ == "__main__":
    main()
