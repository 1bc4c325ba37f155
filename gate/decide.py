"""The admission rules: one pure function, every rule in one place.

`decide(resolution, history, rules, now_ms)` looks at nothing else: no clock,
no database, no network. The guards run in this order, first match wins:

 1. forged        the code carries a signature that does not verify, or a key we don't hold
 2. unknown       no ticket has this code (garbage, oversized and binary codes land here)
 3. exit          an exit gate lets every genuine ticket out (leaving is never blocked)
 4. revoked       the box office cancelled it (ticket list or revocation list)
 5. blocked       the box office put it on hold (pretix's blocked secrets); can be lifted
 6. wrong_event   not for a performance this gate admits tonight
 7. wrong_gate    its zone is not admitted at this door
 8. not_yet_valid before valid_from
 9. expired       after valid_until
10. rules         doors not open yet ("doors open at 19:00"): nobody enters
                  before the doors open, whatever their ticket's past
11. already_used  inside already (says when and where it was first used),
                  or left and re-entry is off. An entry made before the last
                  automatic check-out no longer counts as inside.
12. rules         left less than `reentry_after_min` minutes ago (anti-passback)
13. rules         `entries_per_day` entries already made this venue day
14. reentry       left earlier and re-entry is on
15. ok            first entry

The venue day starts at the check-out time (`checkout`, midnight when none
is set): "entries per day" counts from there, and an automatic check-out
turns everyone still inside at that moment into "left". Times of day are the
gate's local time; `now` is always passed in.

Two verdicts come from the door, not from a scan, and are built here too:
`annul()` turns an admission that nobody walked through into `annulled` /
`not_passed`, and `exit_passage()` is the exit sensor's `exited` / `exit`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

from gate.core.events import History, Ticket, Verdict
from gate.core.timeofday import DAY_MIN, last_time_of_day, parse_time_of_day


@dataclass(frozen=True)
class Resolution:
    """What a code turned out to be, before any rule is applied."""
    ticket: Optional[Ticket]
    forged: bool = False
    ref: str = ""            # ticket id, or a hash of an unknown code
    revoked: bool = False    # on the revocation list
    staff: Optional[object] = None   # a verified staff card (gate/boxoffice/staff.py): not a ticket;
                                     # the gate acts on it and never asks decide()




@dataclass(frozen=True)
class GateRules:
    gate: str
    events: frozenset = field(default_factory=frozenset)
    zones: frozenset = field(default_factory=frozenset)   # empty admits all zones
    direction: str = "in"
    reentry: bool = False
    doors_open: Optional[int] = None    # minutes after midnight; None = no window
    checkout: Optional[int] = None      # minutes after midnight; the venue day starts here
    reentry_after_min: int = 0          # minimum minutes between an exit and a re-entry
    entries_per_day: int = 0            # 0 = no limit

    @classmethod
    def from_config(cls, g) -> "GateRules":
        return cls(g.id, frozenset(g.events), frozenset(g.zones), g.direction, g.reentry,
                   parse_time_of_day(g.doors_open), parse_time_of_day(g.checkout),
                   g.reentry_after_min, g.entries_per_day)

    def day_start(self, now_ms: int) -> int:
        """Unix ms when the current venue day began (the last check-out, or midnight)."""
        return last_time_of_day(self.checkout or 0, now_ms)


def _when(ms: Optional[int]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else "?"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def doors_closed(rules: GateRules, now_ms: int) -> bool:
    """True between the start of the venue day and the doors-open time."""
    if rules.doors_open is None:
        return False
    start = rules.checkout or 0
    since_start = (now_ms - rules.day_start(now_ms)) // 60_000
    return since_start < (rules.doors_open - start) % DAY_MIN


def decide(res: Resolution, history: History, rules: GateRules, now_ms: int) -> Verdict:
    """The verdict for one presented code. Pure: same inputs, same verdict."""
    t = res.ticket
    if res.forged:
        return Verdict("rejected", "forged", t, res.ref, "signature does not verify")
    if t is None:
        return Verdict("rejected", "unknown", None, res.ref, "no such ticket")
    if rules.direction == "out":
        return Verdict("exited", "exit", t, t.ticket_id)
    if res.revoked or t.status == "revoked":
        return Verdict("rejected", "revoked", t, t.ticket_id, "cancelled by the box office")
    if t.status == "blocked":
        return Verdict("rejected", "blocked", t, t.ticket_id, "on hold at the box office")
    if t.event not in rules.events:
        return Verdict("rejected", "wrong_event", t, t.ticket_id, f"ticket is for {t.event}")
    if rules.zones and t.zone not in rules.zones:
        return Verdict("rejected", "wrong_gate", t, t.ticket_id, f"zone {t.zone or '-'} enters elsewhere")
    if t.valid_from is not None and now_ms < t.valid_from:
        return Verdict("rejected", "not_yet_valid", t, t.ticket_id, f"valid from {_when(t.valid_from)}")
    if t.valid_until is not None and now_ms > t.valid_until:
        return Verdict("rejected", "expired", t, t.ticket_id, f"expired {_when(t.valid_until)}")
    if rules.doors_open is not None and doors_closed(rules, now_ms):
        return Verdict("rejected", "rules", t, t.ticket_id, f"doors open at {_hhmm(rules.doors_open)}")
    first = f"first used {_when(history.first_ts)} at {history.first_gate or '?'}"
    day_start = rules.day_start(now_ms)
    checked_out = rules.checkout is not None and (history.last_entry_ts or 0) < day_start
    if history.inside and not checked_out:
        return Verdict("rejected", "already_used", t, t.ticket_id, first)
    if history.first_ts is not None:
        if not rules.reentry:
            return Verdict("rejected", "already_used", t, t.ticket_id, first + "; re-entry is off")
        left = max(history.last_exit_ts or 0, day_start if checked_out and history.inside else 0)
        wait_ms = rules.reentry_after_min * 60_000 - (now_ms - left)
        if rules.reentry_after_min and left and wait_ms > 0:
            return Verdict("rejected", "rules", t, t.ticket_id,
                           f"re-entry {rules.reentry_after_min} min after leaving: "
                           f"{-(-wait_ms // 60_000)} min to go")
        if rules.entries_per_day and sum(1 for ts in history.entries if ts >= day_start) >= rules.entries_per_day:
            return Verdict("rejected", "rules", t, t.ticket_id,
                           f"{rules.entries_per_day} entr{'y' if rules.entries_per_day == 1 else 'ies'} "
                           "a day, used up")
        return Verdict("admitted", "reentry", t, t.ticket_id)
    return Verdict("admitted", "ok", t, t.ticket_id)


def annul(verdict: Verdict) -> Verdict:
    """An admission that nobody walked through: the ticket stays usable."""
    return replace(verdict, result="annulled", reason="not_passed", detail="nobody passed the turnstile")


def exit_passage() -> Verdict:
    """Someone left through the exit sensor (no ticket was shown)."""
    return Verdict("exited", "exit", detail="exit sensor")
