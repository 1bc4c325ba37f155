"""What one lane can physically pass, judged on a gate's own claims (docs/contract.md,
"A gate's word covers its own door").

Every admission or exit a gate reports changes what the other doors and the house
believe. A stolen gate credential can claim 20,000 admissions in one burst; no lane
can pass that. So each gate's claims go through a token bucket whose clock is the
claims' own `ts`, not the time they arrive: an outbox drained after an hour offline
(3,000 events stamped over that hour, in sequence order) refills the bucket as its
own times advance and passes whole, while 20,000 claims stamped within a few
seconds run it dry after the burst. What is judged implausible is flagged, counted
and shown; the receiver does not let it block other doors.

The limits (per gate, admissions and exits in separate buckets):
- admissions: ENTRY_RATE a second sustained, bursts of ENTRY_BURST. A fast
  turnstile lane passes about one person a second, a handheld at a side door one
  every few seconds: the rate is twice the fastest lane, the burst a full minute of it.
- exits: EXIT_RATE a second, bursts of EXIT_BURST (a wide exit door after the show).
- a gate whose clock is synchronised cannot claim a time more than FUTURE_MS ahead
  of the receiver's clock.

The bucket's clock only moves forward: a claim older than the newest one seen (a
resend, or a forger back-dating) earns no tokens. One odd clock cannot wedge a
gate's bucket: a claim more than LEAP_MS away from the bucket's clock (a Pi without
a real-time clock that booted into 1970, or a forged `ts`) moves the clock there, at
most once per RELEAP_S of the receiver's time, and never adds tokens.

What this does not catch: claims spaced at a lane's pace over past times look like
a genuine outbox drain. That is what a lane could have done; against a credential
that does it, `gate broker revoke` and the house's set-aside are the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

ENTRY_RATE, ENTRY_BURST = 2.0, 120
EXIT_RATE, EXIT_BURST = 10.0, 600
FUTURE_MS = 10 * 60_000
LEAP_MS = 24 * 3600_000
RELEAP_S = 60.0
# As many gates as a gate hears (gate/link.py: a venue of bridged entrances has hundreds of lanes). Claims
# from gates beyond this many are not judged (counted as `untracked`), as the house counts but does not
# chase their gaps: with the broker's identities (gate broker config) a credential can only speak for its
# own gate, so more gate ids than this mean a misconfiguration, not a forger.
MAX_GATES = 1024

# Not a lane: the house's pseudo-gate for check-ins pretix holds that no gate made (gate/house/pretix_sync.py).
# It speaks for every pretix device at once, and only the house's credential may publish under it.
NOT_A_LANE = frozenset({"pretix"})

IN, OUT = "in", "out"
LIMITS = {IN: (ENTRY_RATE, ENTRY_BURST), OUT: (EXIT_RATE, EXIT_BURST)}


@dataclass
class _Bucket:
    clock: int          # the newest own `ts` seen (ms)
    tokens: float
    leapt_at: float     # receiver's monotonic time of the last leap


def kind_of(result: str) -> str:
    """Which bucket a scan result draws on: IN, OUT, or "" (not judged: rejections, annulments)."""
    return IN if result == "admitted" else OUT if result == "exited" else ""


class LaneMeter:
    """Per gate, whether its admissions and exits are ones a lane could have passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[tuple, _Bucket] = {}
        self.gates: set[str] = set()
        self.flagged: dict[str, int] = {}        # gate -> claims judged implausible
        self.why: dict[str, int] = {}            # reason -> count
        self.untracked = 0                       # claims of gates beyond MAX_GATES, not judged

    def judge(self, gate: str, result: str, ts: int, synced: bool, now_ms: int) -> str:
        """"" when the claim is plausible (it takes a token), else why not: `lane` (more than a
        lane passes), `future` (a synchronised clock ahead of ours)."""
        kind = kind_of(result)
        if not kind or gate in NOT_A_LANE:
            return ""
        why = self._judge(gate, kind, ts, synced, now_ms)
        if why:
            if gate in self.flagged or len(self.flagged) < MAX_GATES:
                self.flagged[gate] = self.flagged.get(gate, 0) + 1
            self.why[why] = self.why.get(why, 0) + 1
        return why

    def _judge(self, gate: str, kind: str, ts: int, synced: bool, now_ms: int) -> str:
        if synced and ts > now_ms + FUTURE_MS:
            return "future"
        if gate not in self.gates:
            if len(self.gates) >= MAX_GATES:
                self.untracked += 1
                return ""
            self.gates.add(gate)
        rate, burst = LIMITS[kind]
        key = (gate, kind, synced)   # an unsynchronised clock is only comparable with itself
        b = self.buckets.get(key)
        mono = self.clock()
        if b is None:
            b = self.buckets[key] = _Bucket(ts, float(burst), mono)
        elif abs(ts - b.clock) > LEAP_MS:
            if mono - b.leapt_at >= RELEAP_S:   # a clock that jumped: follow it, earn nothing by it
                b.clock, b.leapt_at = ts, mono
        elif ts > b.clock:
            b.tokens = min(float(burst), b.tokens + (ts - b.clock) / 1000 * rate)
            b.clock = ts
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return ""
        return "lane"

    def report(self) -> dict:
        """{"gates": {gate: flagged}, "why": {reason: n}} for health and /api/house."""
        return {"gates": dict(self.flagged), "why": dict(self.why), "untracked": self.untracked}
