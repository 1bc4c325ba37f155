"""Which of each gate's events the house has not seen, and asking for them again.

Every gate numbers its events 1, 2, 3, ...; a jump in a gate's numbers leaves
gaps, which are asked for over the gate's resend topic once they are a few
seconds old (events may arrive out of order), a few times, then reported as
unrecovered.

Bounded whatever the peers send: at most MAX_GATES gates are tracked, each
with at most WINDOW gaps behind its newest number, and at most MAX_MISSING
gaps in all; resend requests go out at most ASK_BUDGET seqs a second. A gate
beyond a cap is still counted, only its gaps are not chased (and that is
counted).
"""

from __future__ import annotations

import time

GRACE_S = 3.0        # a missing seq this old is asked for again
ASKS = 3             # asked this often in vain: reported as unrecovered
WINDOW = 2000        # gaps tracked behind each gate's newest seq
MAX_GATES = 256      # a venue has tens of gates; more ids than this are forgeries or a misconfiguration
MAX_MISSING = 20000  # gaps tracked across all gates
ASK_BUDGET = 2000    # seqs asked for per pass (the house makes a pass a second)
PER_REQUEST = 500    # seqs in one resend request (gate/bus/messages.MAX_RESEND_SEQS)


class GapTracker:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.gates: dict[str, dict] = {}   # gate -> {"max": n, "missing": {seq: [since, asks, last_ask]}, "lost": n}
        self.missing_total = 0
        self.untracked_gates = 0           # events from gates beyond MAX_GATES
        self.untracked_gaps = 0            # gaps not chased because a cap was reached

    def track(self, gate: str, seq: int) -> None:
        """Note a gate's sequence number; a jump leaves gaps to ask that gate for."""
        g = self.gates.get(gate)
        if g is None:
            if len(self.gates) >= MAX_GATES:
                self.untracked_gates += 1
                return
            g = self.gates[gate] = {"max": 0, "missing": {}, "lost": 0}
        if seq > g["max"]:
            low = max(g["max"] + 1, seq - WINDOW)
            self.untracked_gaps += low - (g["max"] + 1)
            room = max(0, MAX_MISSING - self.missing_total)
            if seq - low > room:
                self.untracked_gaps += seq - low - room
                low = seq - room
            now = self.clock()
            missing = g["missing"]
            for s in range(low, seq):
                missing[s] = [now, 0, 0.0]
            self.missing_total += seq - low
            g["max"] = seq
            if len(missing) > WINDOW:   # old gaps fall out of the window
                for s in sorted(missing)[:len(missing) - WINDOW]:
                    del missing[s]
                    self.missing_total -= 1
                    self.untracked_gaps += 1
        elif g["missing"].pop(seq, None) is not None:
            self.missing_total -= 1

    def due(self) -> dict[str, list[int]]:
        """Per gate, the missing seqs to ask for now; gaps asked ASKS times in vain become `lost`."""
        now = self.clock()
        budget = ASK_BUDGET
        out = {}
        for gate, g in self.gates.items():
            if budget <= 0:
                break
            missing = g["missing"]
            asked = []
            for s, entry in list(missing.items()):
                since, asks, last = entry
                if now - since <= GRACE_S or now - last <= GRACE_S:
                    continue
                if asks >= ASKS:
                    del missing[s]
                    self.missing_total -= 1
                    g["lost"] += 1
                    continue
                entry[1], entry[2] = asks + 1, now
                asked.append(s)
                if len(asked) >= min(PER_REQUEST, budget):
                    break
            if asked:
                budget -= len(asked)
                out[gate] = asked
        return out

    def missing(self, gate: str) -> int:
        return len(self.gates.get(gate, {}).get("missing", ()))

    def lost(self, gate: str) -> int:
        return self.gates.get(gate, {}).get("lost", 0)

    def lost_total(self) -> int:
        return sum(g["lost"] for g in self.gates.values())
