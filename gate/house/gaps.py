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

Bounded by value, too: a gate's numbers are followed as runs. A number more than
JUMP beyond every run of its gate (a forged `seq` near 2^53, or a gate whose
counter was reset) starts a run of its own instead of moving the gate's newest
number there; so one odd number cannot leave the real run behind, and real events
lost after it are still asked for. A gate has at most RUNS runs; when another is
needed the one that has seen the fewest events goes (a forger's one-off number, not
the run a working gate extends with every scan).
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
JUMP = 10_000        # a number this far past every run of its gate starts a run of its own
RUNS = 4             # runs followed per gate


class _Run:
    __slots__ = ("max", "missing", "seen")

    def __init__(self, seq: int):
        self.max, self.seen = seq, 0
        self.missing: dict[int, list] = {}   # seq -> [since, asks, last_ask]


class GapTracker:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.gates: dict[str, dict] = {}   # gate -> {"runs": [_Run], "lost": n}
        self.missing_total = 0
        self.untracked_gates = 0           # events from gates beyond MAX_GATES
        self.untracked_gaps = 0            # gaps not chased because a cap was reached
        self.runs_started = 0              # numbers far from every run of their gate (forged or reset)

    def track(self, gate: str, seq: int) -> None:
        """Note a gate's sequence number; a jump leaves gaps to ask that gate for."""
        g = self.gates.get(gate)
        if g is None:
            if len(self.gates) >= MAX_GATES:
                self.untracked_gates += 1
                return
            g = self.gates[gate] = {"runs": [], "lost": 0}
        run = self._run_for(g, seq)
        run.seen += 1
        if seq == run.max + 1:   # the next one, as nearly always: no gap opens
            run.max = seq
        elif seq > run.max:
            self._advance(run, seq)
        elif run.missing.pop(seq, None) is not None:
            self.missing_total -= 1

    def _run_for(self, g: dict, seq: int) -> _Run:
        runs = g["runs"]
        for run in runs:
            if run.max - JUMP <= seq <= run.max + JUMP:
                return run
        if not runs:   # a gate's first number: the ones below it (within the window) are its gaps
            run = _Run(0)
            runs.append(run)
            return run
        self.runs_started += 1
        if len(runs) >= RUNS:
            gone = min(runs, key=lambda r: r.seen)
            runs.remove(gone)
            self.missing_total -= len(gone.missing)
            self.untracked_gaps += len(gone.missing)
        run = _Run(seq)   # nothing below a far jump is chased: it may be a forgery
        runs.append(run)
        return run

    def _advance(self, run: _Run, seq: int) -> None:
        low = max(run.max + 1, seq - WINDOW)
        self.untracked_gaps += low - (run.max + 1)
        room = max(0, MAX_MISSING - self.missing_total)
        if seq - low > room:
            self.untracked_gaps += seq - low - room
            low = seq - room
        now = self.clock()
        missing = run.missing
        for s in range(low, seq):
            missing[s] = [now, 0, 0.0]
        self.missing_total += seq - low
        run.max = seq
        if len(missing) > WINDOW:   # old gaps fall out of the window
            for s in sorted(missing)[:len(missing) - WINDOW]:
                del missing[s]
                self.missing_total -= 1
                self.untracked_gaps += 1

    def due(self) -> dict[str, list[int]]:
        """Per gate, the missing seqs to ask for now; gaps asked ASKS times in vain become `lost`."""
        now = self.clock()
        budget = ASK_BUDGET
        out = {}
        for gate, g in self.gates.items():
            if budget <= 0:
                break
            asked: list[int] = []
            for run in g["runs"]:
                for s, entry in list(run.missing.items()):
                    if len(asked) >= min(PER_REQUEST, budget):
                        break
                    since, asks, last = entry
                    if now - since <= GRACE_S or now - last <= GRACE_S:
                        continue
                    if asks >= ASKS:
                        del run.missing[s]
                        self.missing_total -= 1
                        g["lost"] += 1
                        continue
                    entry[1], entry[2] = asks + 1, now
                    asked.append(s)
            if asked:
                budget -= len(asked)
                out[gate] = asked
        return out

    def missing(self, gate: str) -> int:
        g = self.gates.get(gate)
        return sum(len(r.missing) for r in g["runs"]) if g else 0

    def lost(self, gate: str) -> int:
        return self.gates.get(gate, {}).get("lost", 0)

    def lost_total(self) -> int:
        return sum(g["lost"] for g in self.gates.values())
