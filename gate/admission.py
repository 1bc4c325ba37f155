"""Everything that follows a verdict, in one place, one method per happening.

A verdict from a scan, an admission nobody walked through, someone leaving by
the exit sensor, a scan reported by another gate, a staff card, a venue
control message and a door fault all end here. The order
inside `verdict()` is the gate's promise:

  1. the LED and buzzer (queued: the patron hears the beep at once),
  2. the durable outbox write (fsync for an admission),
  3. the ticket's history in the local store,
  4. only then the turnstile's relay,

so nobody is let in without a record that survives a power cut. The gate's
mode (gate/modes.py) shapes each step: a look-up (`info`) is shown and sent
but never recorded and never opens the door; a rehearsal (`test`) is recorded
apart from live uses. Runs on the
scan loop's thread only; the door, link and updater threads reach it through
typed control messages (gate/core/events.py).

Other gates' scans cost the loop a bounded amount of time whatever the bus
sends: they wait in a bounded backlog (more are dropped and counted) and are
written REMOTE_PER_PASS at a time, in one transaction, between frames; the
ticket history they grow is capped at MAX_HISTORY rows.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Optional

from gate.boxoffice.staff import StaffCode, StaffVerifier, read_control
from gate.core.clock import clock_synchronised, now_ms
from gate.core.events import (
    Admitted,
    DoorFault,
    ExitPassage,
    ModeButton,
    NobodyPassed,
    RemoteScan,
    ScanEvent,
    Ticket,
    VenueControl,
    Verdict,
)
from gate.decide import annul, exit_passage
from gate.hospitality import attention
from gate.modes import GateMode
from gate.state.diskspace import DiskFull
from gate.verdict_text import display_lines

log = logging.getLogger(__name__)

SYNCED_RESULTS = ("admitted", "exited", "annulled")
REMOTE_BACKLOG = 20_000   # other gates' scans waiting for the loop (an outbox drained after an outage)
REMOTE_PER_PASS = 100     # written per pass of the loop (one transaction: a few ms on a Pi)
MAX_HISTORY = 200_000     # ticket-history rows; past this, other gates' scans of tickets new here are not kept


class Admission:
    """The owner of an admission: hospitality, feedback, outbox, history, turnstile."""

    def __init__(self, gate_id: str, *, store, outbox, feedback, hospitality: dict,
                 turnstile=None, trigger=None, on_verdict: Optional[Callable[[Verdict, ScanEvent], None]] = None,
                 modes: Optional[GateMode] = None, assist_tags=(), staff: Optional[StaffVerifier] = None,
                 report: Optional[Callable[..., None]] = None):
        self.gate_id = gate_id
        self.store = store
        self.outbox = outbox
        self.feedback = feedback
        self.hospitality = hospitality
        self.turnstile = turnstile
        self.trigger = trigger
        self.on_verdict = on_verdict
        self.modes = modes or GateMode(None)
        self.assist_tags = frozenset(assist_tags)
        self.staff_verifier = staff or StaffVerifier()
        self.report = report          # the link's status report (mode, latch); None offline
        self.verdicts = 0
        self.remote: deque = deque()
        self.drops: dict[str, int] = {}   # other gates' scans not applied, by why (the gate's health shows them)
        self.staff_events: list[tuple[str, str]] = []   # (who, what) of the cards obeyed, newest last
        self.disk_full = False            # the last record failed for want of room
        self.unrecorded = 0               # verdicts that could not be written (full disk)

    def verdict(self, v: Verdict, ticket: Optional[Ticket], ts_ms: int) -> ScanEvent:
        """A verdict for a presented code: show it, record it, then (if admitted) open the door."""
        v.attention, v.level, v.greeting = attention(ticket, self.hospitality)
        mode = self.modes.event_mode
        direction = "out" if v.result == "exited" else "in"
        if mode == "info":
            # A look-up: what the ticket is and what it would get; nothing recorded, the door stays shut.
            self.feedback.show("lookup", "", ("LOOKUP: would be",) + display_lines(v))
            event = self._record(v, ticket.event if ticket else "", v.ticket_ref, ts_ms, direction, v.attention,
                                 mode)
            if self.trigger is not None:
                self.trigger.answered_press()
            return event
        assist = bool(v.admitted and ticket is not None and self.assist_tags.intersection(ticket.tags))
        lines = display_lines(v) + (("ACCESSIBLE: longer release",) if assist and self.turnstile else ())
        self.feedback.show(v.reason, v.level if v.admitted else "", lines)
        event = self._record(v, ticket.event if ticket else "", v.ticket_ref, ts_ms, direction, v.attention, mode)
        if not event.seq:
            # Not on disk (full): no record, no release. The relay stays shut; the usher admits by hand.
            self.feedback.show_unrecorded()
        elif v.result in ("admitted", "exited") and ticket is not None:
            self.store.record(ticket.ticket_id, v.result, ts_ms, self.gate_id, mode)
        if v.admitted and self.turnstile is not None and event.seq:
            self.turnstile.admit(Admitted(event, v), assist=assist)
        if self.trigger is not None:
            self.trigger.answered_press()
        return event

    def nobody_passed(self, msg: NobodyPassed) -> ScanEvent:
        """The turnstile released and nobody walked through: the ticket stays usable."""
        first, v = msg.admission.event, msg.admission.verdict
        self.store.record(first.ticket, "annulled", first.ts, self.gate_id, first.mode)
        va = annul(v)
        self.feedback.show(va.reason)
        return self._record(va, first.event, first.ticket, first.ts, "in", tuple(first.attention), first.mode)

    def exit_passage(self, msg: ExitPassage) -> ScanEvent:
        """Someone left through the exit sensor."""
        return self._record(exit_passage(), "", "", msg.ts_ms, "out", (), self.modes.event_mode)

    def remote_scan(self, msg: RemoteScan) -> None:
        """Another gate used (or gave back) a ticket: our history follows (see apply_remote)."""
        e = msg.event
        if not e.ticket or e.result not in SYNCED_RESULTS or e.mode not in ("live", "test"):   # info: never
            return
        if len(self.remote) >= REMOTE_BACKLOG:
            self.drops["remote_backlog"] = self.drops.get("remote_backlog", 0) + 1
            return
        self.remote.append((e.ticket, e.result, e.ts, e.gate, e.mode))   # a tuple: a full backlog stays a few MB

    def apply_remote(self) -> None:
        """Write up to REMOTE_PER_PASS waiting remote scans into the ticket history."""
        if not self.remote:
            return
        batch = [self.remote.popleft() for _ in range(min(REMOTE_PER_PASS, len(self.remote)))]
        kept = self.store.record_remote(batch, MAX_HISTORY)
        if kept < len(batch):
            self.drops["history_full"] = self.drops.get("history_full", 0) + len(batch) - kept

    # -- the door team ----------------------------------------------------------------
    def staff_card(self, card: StaffCode) -> None:
        """A verified staff card: switch this gate's mode, or clear its out-of-order latch."""
        if card.action == "clear":
            self.modes.clear_latch(by=card.name)
            if self.turnstile is not None:
                self.turnstile.latch(False)
            what = "latch cleared"
        else:
            self.modes.switch(card.action, by=card.name)
            what = f"{card.action} mode"
        self.staff_events = (self.staff_events + [(card.name, what)])[-20:]
        self.feedback.show("staff", "", (f"STAFF {card.name}", what.upper()))
        if self.trigger is not None:
            self.trigger.answered_press()
        self.report_state()

    def mode_button(self, _msg: ModeButton) -> None:
        """A handheld's second button or long press: look-up mode on, or back to entry."""
        self.modes.switch("entry" if self.modes.mode == "info" else "info", by="button")
        self.feedback.show("staff", "", ("LOOKUP ON" if self.modes.mode == "info" else "LOOKUP OFF",))
        self.report_state()

    def venue_control(self, msg: VenueControl) -> None:
        """The venue switched to rehearsal, or back to live (which clears what the rehearsal left)."""
        code = read_control(msg.payload, self.staff_verifier, self.modes.venue_issued, now_ms() // 1000)
        if code is None:
            log.warning("ignored a venue control message (unsigned, wrong key, stale or malformed)")
            return
        self.modes.venue, self.modes.venue_issued = code.action, code.issued
        if code.action == "live":
            n = self.store.clear_rehearsal()
            log.warning("venue live (by %s): rehearsal uses of %d ticket(s) cleared", code.name, n)
        else:
            log.warning("venue in rehearsal (by %s)", code.name)
        self.report_state()

    def door_fault(self, msg: DoorFault) -> None:
        """The door contradicts the relay, or the camera is gone too long: out of order until cleared."""
        if self.turnstile is not None:
            self.turnstile.latch(True)
        if self.modes.latch(msg.why):
            self.feedback.show("out_of_order", "", ("OUT OF ORDER", msg.why))
            self.report_state()

    def report_state(self) -> None:
        if self.report is not None:
            self.report(mode=self.modes.mode, venue_mode=self.modes.venue, out_of_order=self.modes.latched())

    def _record(self, v: Verdict, event: str, ticket_ref: str, ts_ms: int, direction: str, tags,
                mode: str = "live") -> ScanEvent:
        """Write the scan event; on a full disk an unnumbered (seq 0), unrecorded event comes back."""
        try:
            e = self.outbox.append(self.gate_id, ts_ms, event, ticket_ref, direction, v.result, v.reason, tags,
                                   mode=mode, clock="ok" if clock_synchronised() else "unsynced")
            self.disk_full = False
        except DiskFull as exc:
            self.unrecorded += 1
            if not self.disk_full or self.unrecorded % 100 == 0:
                log.error("DISK FULL: %s; %d verdict(s) not recorded; admissions do not release the turnstile "
                          "until there is room (free space under the gate's storage)", exc, self.unrecorded)
            self.disk_full = True
            e = ScanEvent(id="", gate=self.gate_id, seq=0, ts=ts_ms, event=event, ticket=ticket_ref,
                          dir=direction, result=v.result, reason=v.reason, attention=list(tags), mode=mode)
        self.verdicts += 1
        if self.on_verdict:
            self.on_verdict(v, e)
        return e
