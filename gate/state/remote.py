"""Other gates' scans, followed into this gate's ticket history (used-ticket sync).

A ticket used at the next door must be `already_used` here too, so every admission,
exit and annulment another gate publishes is written into the local history: into
that gate's own rows, never this gate's or a third's (gate/state/uses.py), so a gate's
word covers its own door only (docs/contract.md). Before that, each claim is judged:
- an admission or exit beyond what one lane can pass (gate/core/lane.py, on the
  claims' own times) is not recorded: it is counted per gate as `implausible` in this
  gate's health, and never makes a ticket `already_used` here;
- a scan from a gate whose clock is not synchronised is recorded at the time it
  arrived here, not at its own (a `ts = 1` would otherwise be the ticket's first use
  at every door); its own time is kept only to match its annulment to it.

They cost the scan loop a bounded amount of time whatever the bus sends: they wait in a
bounded backlog (more are dropped and counted) and are written REMOTE_PER_PASS at a
time, in one transaction, between frames; the history they grow is capped at
MAX_HISTORY rows. Runs on the scan loop's thread; the link hands scans over as
`RemoteScan` control messages.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque

from gate.core.clock import now_ms
from gate.core.events import RemoteScan
from gate.core.lane import LaneMeter
from gate.state.diskspace import is_full, is_readonly, storage_readonly

log = logging.getLogger(__name__)

SYNCED_RESULTS = ("admitted", "exited", "annulled")
REMOTE_BACKLOG = 20_000   # other gates' scans waiting for the loop (an outbox drained after an outage)
REMOTE_PER_PASS = 100     # written per pass of the loop (one transaction: a few ms on a Pi)
MAX_HISTORY = 200_000     # ticket-history rows; past this, other gates' scans of tickets new here are not kept


class RemoteScans:
    """The backlog of other gates' scans and what was not applied, by why (the gate's health shows it)."""

    def __init__(self, store, lane: LaneMeter | None = None):
        self.store = store
        self.lane = lane or LaneMeter()
        self.backlog: deque = deque()
        self.drops: dict[str, int] = {}

    @property
    def implausible(self) -> dict[str, int]:
        """gate -> its admissions and exits this gate did not believe (health: `implausible`)."""
        return dict(self.lane.flagged)

    def offer(self, msg: RemoteScan) -> None:
        """Another gate used (or gave back) a ticket: keep it for apply() (look-ups never count)."""
        e = msg.event
        if not e.ticket or e.result not in SYNCED_RESULTS or e.mode not in ("live", "test"):
            return
        now = now_ms()
        synced = e.clock != "unsynced"
        why = self.lane.judge(e.gate, e.result, e.ts, synced, now)
        if why:
            n = self.drops["implausible"] = self.drops.get("implausible", 0) + 1
            if n == 1 or n % 1000 == 0:   # at most a line per thousand: a flood must not flood the log
                log.warning("gate %r claims more than its lane can pass (%s); not believed here "
                            "(%d such claims so far, by gate: %s)", e.gate, why, n, self.lane.flagged)
            return
        if len(self.backlog) >= REMOTE_BACKLOG:
            self.drops["remote_backlog"] = self.drops.get("remote_backlog", 0) + 1
            return
        ts = e.ts if synced else now
        # a tuple: a full backlog stays a few MB
        self.backlog.append((e.ticket, e.result, ts, e.gate, e.mode, None if synced else e.ts))

    def apply(self) -> None:
        """Write up to REMOTE_PER_PASS waiting scans into the ticket history."""
        if not self.backlog:
            return
        batch = [self.backlog.popleft() for _ in range(min(REMOTE_PER_PASS, len(self.backlog)))]
        try:
            kept = self.store.record_remote(batch, MAX_HISTORY)
        except sqlite3.OperationalError as exc:   # read-only or full storage: counted, never the loop's end
            if not (is_readonly(exc) or is_full(exc)):
                raise
            kind = "storage_readonly" if is_readonly(exc) or storage_readonly(self.store.path.parent) else "disk_full"
            self.drops[kind] = self.drops.get(kind, 0) + len(batch)
            return
        if kept < len(batch):
            self.drops["history_full"] = self.drops.get("history_full", 0) + len(batch) - kept
