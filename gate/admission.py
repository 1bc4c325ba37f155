"""The owner of a presented code, and of everything that follows a verdict.

The loop (gate/scanner.py) turns frames or a reader's input into codes and hands
each to `Admission.present()`, which runs the gate's guards in one documented
order (staff card, latch, mode, resolve, history, decide). Its promise after a
verdict (`verdict()`) is this order:

  1. the LED and buzzer (queued: the patron hears the beep at once),
  2. the durable outbox write (fsync for an admission),
  3. the ticket's history in the local store,
  4. only then the turnstile's relay,

so nobody is let in without a record that survives a power cut. The gate's
mode (gate/modes.py), read once per code, shapes each step: a look-up (`info`)
is shown and sent but never recorded and never opens the door; a rehearsal
(`test`) is recorded apart from live uses.

The door's happenings end here too, one method each: an admission nobody walked
through, someone leaving by the exit sensor, a staff card, a venue control
message, a door fault. Runs on the scan loop's thread only; the door, link and
updater threads reach it through typed control messages (gate/core/events.py).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from typing import Callable, Optional

from gate import staffrules
from gate.boxoffice.staff import StaffCode
from gate.core.clock import clock_synchronised, now_ms
from gate.core.events import (
    NO_WELCOME,
    Admitted,
    Code,
    DoorFault,
    ExitPassage,
    History,
    IdentityClash,
    ModeButton,
    NobodyPassed,
    ScanEvent,
    Ticket,
    VenueControl,
    Verdict,
    Welcome,
)
from gate.decide import GateRules, annul, decide, exit_passage
from gate.hospitality import welcome
from gate.modes import GateMode, ModeSnapshot
from gate.resolve import Resolver
from gate.state.diskspace import DiskFull, StorageReadOnly
from gate.verdict_text import display_lines

log = logging.getLogger(__name__)

# Called once per verdict, after it is on disk (or known not to be): (verdict, welcome, scan event).
OnVerdict = Callable[[Verdict, Welcome, ScanEvent], None]


class Admission:
    """The owner of a presented code: guards, rules, hospitality, feedback, outbox, history, turnstile."""

    def __init__(self, gate_id: str, *, resolver: Resolver, rules: GateRules, store, outbox, feedback,
                 hospitality: dict, turnstile=None, trigger=None, on_verdict: Optional[OnVerdict] = None,
                 modes: Optional[GateMode] = None, assist_tags=(), report: Optional[Callable[..., None]] = None,
                 instance: str = ""):
        self.gate_id = gate_id
        self.instance = instance      # this device (gate/state/instance.py): carried by every scan event
        self.resolver = resolver
        self.rules = rules
        self.store = store
        self.outbox = outbox
        self.feedback = feedback
        self.hospitality = hospitality
        self.turnstile = turnstile
        self.trigger = trigger
        self.on_verdict = on_verdict
        self.modes = modes or GateMode(None)
        self.assist_tags = frozenset(assist_tags)
        self.report = report          # the link's status report (mode, latch); None offline
        self.verdicts = 0
        self.staff_events: list[tuple[str, str]] = []   # (who, what) of the cards obeyed, newest last
        self.disk_full = False            # the last record failed (no room, or read-only storage)
        self.unrecorded = 0               # verdicts that could not be written
        self.unrecorded_why = ""          # "disk full" or "storage read-only"

    def present(self, code: Code, ts_ms: int) -> Optional[Verdict]:
        """One presented code, through the gate's guards in this order (the first that ends it wins):

        1. staff card  a verified staff card is obeyed (a mode, or the latch cleared), never decided;
                       it comes first because it is how a gate out of order is put back in service
        2. latch       a gate out of order says so and goes no further: the code is not even looked up
        3. mode        the gate's mode is read once, here, and passed down to every step below; a gate
                       whose identity another device uses (gate/identity.py) decides as a look-up
        4. resolve     what the code is: a listed or signed ticket, a forgery, or nothing we know...
        5. history     ...and that ticket's past use, both under one store snapshot; in rehearsal the
                       rehearsal's uses unless it was used live, otherwise the real ones (a look-up sees
                       what the door would; gate/staffrules.py)
        6. decide      the pure rules (gate/decide.py), the direction following the mode; then
                       `verdict()` shows, records and releases

        Returns the verdict, or None when the code was not decided (a staff card, out of order)."""
        card = self.resolver.staff_card(code)
        if card is not None:
            self.staff_card(card)
            return None
        now = self.modes.snapshot()
        if now.latched:
            self.feedback.show("out_of_order", "", ("OUT OF ORDER", now.latched))
            return None
        if now.duplicate and now.mode != "info":
            # Another device has this gate's id: each heard only part of the venue's scans, so neither may
            # admit on its own record. What the ticket would get is still decided and shown.
            now = replace(now, mode="info")
        with self.store.snapshot():
            res = self.resolver.resolve(code)
            t = res.ticket
            hist = staffrules.history(self.store, t.ticket_id, now) if t is not None else History()
        rules = self.rules if self.rules.direction == now.direction else replace(self.rules, direction=now.direction)
        v = decide(res, hist, rules, ts_ms)
        self.verdict(v, t, ts_ms, now)
        return v

    def verdict(self, v: Verdict, ticket: Optional[Ticket], ts_ms: int, now: ModeSnapshot) -> ScanEvent:
        """A verdict for a presented code: show it, record it, then (if admitted) open the door."""
        w = welcome(ticket, self.hospitality, self.assist_tags)
        mode = now.event_mode
        event_name = ticket.event if ticket else ""
        direction = "out" if v.result == "exited" else "in"
        if mode == "info":
            # A look-up: what the ticket is and what it would get; nothing recorded, the door stays shut.
            head = ("NOT ADMITTING: ID IN USE", "BY ANOTHER DEVICE", "would be:") if now.duplicate \
                else ("LOOKUP: would be",)
            self.feedback.show("lookup", "", head + display_lines(v, w))
            event = self._record(v, w, event_name, v.ticket_ref, ts_ms, direction, mode)
            if self.trigger is not None:
                self.trigger.answered_press()
            return event
        assist = v.admitted and w.assist
        lines = display_lines(v, w) + (("ACCESSIBLE: longer release",) if assist and self.turnstile else ())
        self.feedback.show(v.reason, w.level if v.admitted else "", lines, rehearsal=mode == "test")
        event = self._record(v, w, event_name, v.ticket_ref, ts_ms, direction, mode)
        if not event.seq:
            # Not on disk (full, read-only): no record, no release. The relay stays shut; the usher admits by hand.
            self.feedback.show_unrecorded(lines + (f"NOT RECORDED: {self.unrecorded_why}",))
        elif v.result in ("admitted", "exited") and ticket is not None:
            self.store.record(ticket.ticket_id, v.result, ts_ms, self.gate_id, mode)
        if v.admitted and self.turnstile is not None and event.seq:
            self.turnstile.admit(Admitted(event, v, w), assist=assist)
        if self.trigger is not None:
            self.trigger.answered_press()
        return event

    def nobody_passed(self, msg: NobodyPassed) -> ScanEvent:
        """The turnstile released and nobody walked through: the ticket stays usable."""
        first = msg.admission.event
        self.store.record(first.ticket, "annulled", first.ts, self.gate_id, first.mode)
        va = annul(msg.admission.verdict)
        self.feedback.show(va.reason)
        return self._record(va, msg.admission.welcome, first.event, first.ticket, first.ts, "in", first.mode)

    def exit_passage(self, msg: ExitPassage) -> ScanEvent:
        """Someone left through the exit sensor."""
        return self._record(exit_passage(), NO_WELCOME, "", "", msg.ts_ms, "out", self.modes.event_mode)

    # -- the door team ----------------------------------------------------------------
    def staff_card(self, card: StaffCode) -> None:
        """A verified staff card: switch this gate's mode, or clear its out-of-order latch."""
        if staffrules.refused(card, self.modes, self.feedback):   # e.g. a rehearsal card while the venue is live
            return
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
        code = staffrules.venue_control(msg.payload, self.resolver.staff, self.modes, now_ms() // 1000)
        if code is None:
            return   # not newer than the one applied (kept on disk), or not genuine: logged there, by kind
        if code.action == "live":
            try:
                n = self.store.clear_rehearsal()
            except sqlite3.OperationalError as exc:   # read-only storage: the rehearsal's uses stay, and say so
                log.error("venue live, but the rehearsal uses cannot be cleared (%s): a ticket used in the "
                          "rehearsal may be refused here until they are", exc)
                n = 0
            log.info("venue live (by %s): rehearsal uses of %d ticket(s) cleared", code.name, n)
        else:
            log.info("venue in rehearsal (by %s)", code.name)
        self.report_state()

    def identity_clash(self, msg: IdentityClash) -> None:
        """Another device is using this gate's identity (gate/identity.py): look-ups only until cleared."""
        if self.modes.flag_duplicate(msg.why):
            log.warning("identity fault latched (%s): look-ups only until a staff card or `gate doctor "
                        "--clear-latch` clears it", msg.why)
            self.feedback.show("out_of_order", "", ("NOT ADMITTING", msg.why))
            self.report_state()

    def door_fault(self, msg: DoorFault) -> None:
        """The door contradicts the relay, or the camera is gone too long: out of order until cleared."""
        if self.turnstile is not None:
            self.turnstile.latch(True)
        if self.modes.latch(msg.why):
            self.feedback.show("out_of_order", "", ("OUT OF ORDER", msg.why))
            self.report_state()

    def report_state(self) -> None:
        """Say the mode and any latch on the status topic (when the gate has a link)."""
        if self.report is not None:
            now = self.modes.snapshot()
            # venue_issued: which control message it applied, so `gate venue` can tell its own took effect
            self.report(mode=now.mode, venue_mode=now.venue, venue_issued=self.modes.venue_issued,
                        out_of_order=now.latched, duplicate=now.duplicate)

    def _record(self, v: Verdict, w: Welcome, event: str, ticket_ref: str, ts_ms: int, direction: str,
                mode: str) -> ScanEvent:
        """Write the scan event; on a full disk an unnumbered (seq 0), unrecorded event comes back."""
        try:
            e = self.outbox.append(self.gate_id, ts_ms, event, ticket_ref, direction, v.result, v.reason,
                                   w.attention, mode=mode, clock="ok" if clock_synchronised() else "unsynced",
                                   instance=self.instance)
            self.disk_full = False
        except DiskFull as exc:
            self.unrecorded += 1
            readonly = isinstance(exc, StorageReadOnly)
            self.unrecorded_why = "storage read-only" if readonly else "disk full"
            if not self.disk_full or self.unrecorded % 100 == 0:
                if readonly:
                    log.error("STORAGE READ-ONLY: %s; %d verdict(s) not recorded; admissions do not release the "
                              "turnstile until the storage is writable again (an SD card the kernel remounted "
                              "read-only after I/O errors: check dmesg, then fsck or replace the card)",
                              exc, self.unrecorded)
                else:
                    log.error("DISK FULL: %s; %d verdict(s) not recorded; admissions do not release the turnstile "
                              "until there is room (free space under the gate's storage)", exc, self.unrecorded)
            self.disk_full = True
            e = ScanEvent(id="", gate=self.gate_id, seq=0, ts=ts_ms, event=event, ticket=ticket_ref,
                          dir=direction, result=v.result, reason=v.reason, attention=list(w.attention), mode=mode,
                          instance=self.instance)
        self.verdicts += 1
        if self.on_verdict:
            self.on_verdict(v, w, e)
        return e
