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
10. already_used  inside already (says when and where it was first used),
                  or left and re-entry is off
11. reentry       left earlier and re-entry is on
12. ok            first entry

Two verdicts come from the door, not from a scan, and are built here too:
`annul()` turns an admission that nobody walked through into `annulled` /
`not_passed`, and `exit_passage()` is the exit sensor's `exited` / `exit`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

from gate.events import History, Ticket, Verdict


@dataclass(frozen=True)
class Resolution:
    """What a code turned out to be, before any rule is applied."""
    ticket: Optional[Ticket]
    forged: bool = False
    ref: str = ""            # ticket id, or a hash of an unknown code
    revoked: bool = False    # on the revocation list


@dataclass(frozen=True)
class GateRules:
    gate: str
    events: frozenset = field(default_factory=frozenset)
    zones: frozenset = field(default_factory=frozenset)   # empty admits all zones
    direction: str = "in"
    reentry: bool = False

    @classmethod
    def from_config(cls, g) -> "GateRules":
        return cls(g.id, frozenset(g.events), frozenset(g.zones), g.direction, g.reentry)


def _when(ms: Optional[int]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else "?"


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
    first = f"first used {_when(history.first_ts)} at {history.first_gate or '?'}"
    if history.inside:
        return Verdict("rejected", "already_used", t, t.ticket_id, first)
    if history.first_ts is not None:
        if not rules.reentry:
            return Verdict("rejected", "already_used", t, t.ticket_id, first + "; re-entry is off")
        return Verdict("admitted", "reentry", t, t.ticket_id)
    return Verdict("admitted", "ok", t, t.ticket_id)


def annul(verdict: Verdict) -> Verdict:
    """An admission that nobody walked through: the ticket stays usable."""
    return replace(verdict, result="annulled", reason="not_passed", detail="nobody passed the turnstile")


def exit_passage() -> Verdict:
    """Someone left through the exit sensor (no ticket was shown)."""
    return Verdict("exited", "exit", detail="exit sensor")
