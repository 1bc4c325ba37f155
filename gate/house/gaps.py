"""Gap recovery: which of a gate's sequence numbers the house never received.

Each gate numbers its events; a jump leaves gaps. A gap still open after a
grace period (events can arrive out of order) is asked for on that gate's
resend topic, a few times; after that it is reported as unrecovered.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("gate.house")

GAP_GRACE_S = 3.0      # a missing seq this old is asked for again
GAP_ASKS = 3           # asked this often in vain: reported as unrecovered
GAP_WINDOW = 10_000    # seqs tracked behind each gate's newest
ASK_AT_ONCE = 500      # seqs in one resend request


class GapTracker:
    def __init__(self):
        self.gates: dict[str, dict] = {}   # gate -> {"max": n, "missing": {seq: [since, asks, last_ask]}, "lost": n}

    def track(self, gate: str, seq: int) -> None:
        """Note a gate's sequence number; a jump leaves gaps to ask that gate for."""
        g = self.gates.setdefault(gate, {"max": 0, "missing": {}, "lost": 0})
        if seq > g["max"]:
            now = time.monotonic()
            for missing in range(max(g["max"] + 1, seq - GAP_WINDOW), seq):
                g["missing"][missing] = [now, 0, 0.0]
            g["max"] = seq
        else:
            g["missing"].pop(seq, None)

    def due(self) -> dict[str, list[int]]:
        """Per gate, the missing seqs to ask for now (each ask counted; given up after GAP_ASKS)."""
        now, out = time.monotonic(), {}
        for gate, g in self.gates.items():
            due = [s for s, (since, asks, last) in g["missing"].items()
                   if now - since > GAP_GRACE_S and now - last > GAP_GRACE_S][:ASK_AT_ONCE]
            for s in due:
                entry = g["missing"][s]
                if entry[1] >= GAP_ASKS:
                    del g["missing"][s]
                    g["lost"] += 1
                    log.error("gate %s: event seq %d never arrived and the gate no longer has it", gate, s)
                else:
                    entry[1], entry[2] = entry[1] + 1, now
            asked = [s for s in due if s in g["missing"]]
            if asked:
                out[gate] = asked
        return out

    def missing(self, gate: str) -> int:
        return len(self.gates.get(gate, {}).get("missing", ()))

    def lost(self, gate: str) -> int:
        return self.gates.get(gate, {}).get("lost", 0)
