"""Everything that follows a verdict, in one place, one method per happening.

A verdict from a scan, an admission nobody walked through, someone leaving by
the exit sensor, and a scan reported by another gate all end here. The order
inside `verdict()` is the gate's promise:

  1. the LED and buzzer (queued: the patron hears the beep at once),
  2. the durable outbox write (fsync for an admission),
  3. the ticket's history in the local store,
  4. only then the turnstile's relay,

so nobody is let in without a record that survives a power cut. Runs on the
scan loop's thread only; the door, link and updater threads reach it through
typed control messages (gate/events.py).

Other gates' scans cost the loop a bounded amount of time whatever the bus
sends: they wait in a bounded backlog (more are dropped and counted) and are
written REMOTE_PER_PASS at a time, in one transaction, between frames; the
ticket history they grow is capped at MAX_HISTORY rows.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Optional

from gate.decide import annul, exit_passage
from gate.events import Admitted, ExitPassage, NobodyPassed, RemoteScan, ScanEvent, Ticket, Verdict
from gate.hospitality import attention
from gate.verdict_text import display_lines

log = logging.getLogger("gate.admission")

SYNCED_RESULTS = ("admitted", "exited", "annulled")
REMOTE_BACKLOG = 20_000   # other gates' scans waiting for the loop (an outbox drained after an outage)
REMOTE_PER_PASS = 100     # written per pass of the loop (one transaction: a few ms on a Pi)
MAX_HISTORY = 200_000     # ticket-history rows; past this, other gates' scans of tickets new here are not kept


class Admission:
    """The owner of an admission: hospitality, feedback, outbox, history, turnstile."""

    def __init__(self, gate_id: str, *, store, outbox, feedback, hospitality: dict,
                 turnstile=None, trigger=None, on_verdict: Optional[Callable[[Verdict, ScanEvent], None]] = None):
        self.gate_id = gate_id
        self.store = store
        self.outbox = outbox
        self.feedback = feedback
        self.hospitality = hospitality
        self.turnstile = turnstile
        self.trigger = trigger
        self.on_verdict = on_verdict
        self.verdicts = 0
        self.remote: deque = deque()
        self.drops: dict[str, int] = {}   # other gates' scans not applied, by why (the gate's health shows them)

    def verdict(self, v: Verdict, ticket: Optional[Ticket], ts_ms: int) -> ScanEvent:
        """A verdict for a presented code: show it, record it, then (if admitted) open the door."""
        v.attention, v.level, v.greeting = attention(ticket, self.hospitality)
        self.feedback.show(v.reason, v.level if v.admitted else "", display_lines(v))
        event = self._record(v, ticket.event if ticket else "", v.ticket_ref, ts_ms,
                             "out" if v.result == "exited" else "in", v.attention)
        if v.result in ("admitted", "exited") and ticket is not None:
            self.store.record(ticket.ticket_id, v.result, ts_ms, self.gate_id)
        if v.admitted and self.turnstile is not None:
            self.turnstile.admit(Admitted(event, v))
        if self.trigger is not None:
            self.trigger.answered_press()
        return event

    def nobody_passed(self, msg: NobodyPassed) -> ScanEvent:
        """The turnstile released and nobody walked through: the ticket stays usable."""
        first, v = msg.admission.event, msg.admission.verdict
        self.store.record(first.ticket, "annulled", first.ts, self.gate_id)
        va = annul(v)
        self.feedback.show(va.reason)
        return self._record(va, first.event, first.ticket, first.ts, "in", tuple(first.attention))

    def exit_passage(self, msg: ExitPassage) -> ScanEvent:
        """Someone left through the exit sensor."""
        return self._record(exit_passage(), "", "", msg.ts_ms, "out", ())

    def remote_scan(self, msg: RemoteScan) -> None:
        """Another gate used (or gave back) a ticket: our history follows (see apply_remote)."""
        e = msg.event
        if not e.ticket or e.result not in SYNCED_RESULTS or e.mode != "live":
            return
        if len(self.remote) >= REMOTE_BACKLOG:
            self.drops["remote_backlog"] = self.drops.get("remote_backlog", 0) + 1
            return
        self.remote.append((e.ticket, e.result, e.ts, e.gate))   # a tuple: a full backlog stays a few MB

    def apply_remote(self) -> None:
        """Write up to REMOTE_PER_PASS waiting remote scans into the ticket history."""
        if not self.remote:
            return
        batch = [self.remote.popleft() for _ in range(min(REMOTE_PER_PASS, len(self.remote)))]
        kept = self.store.record_remote(batch, MAX_HISTORY)
        if kept < len(batch):
            self.drops["history_full"] = self.drops.get("history_full", 0) + len(batch) - kept

    def _record(self, v: Verdict, event: str, ticket_ref: str, ts_ms: int, direction: str, tags) -> ScanEvent:
        e = self.outbox.append(self.gate_id, ts_ms, event, ticket_ref, direction, v.result, v.reason, tags)
        self.verdicts += 1
        if self.on_verdict:
            self.on_verdict(v, e)
        return e
