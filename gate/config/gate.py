"""[gate]: who this gate is on the bus, which performances it admits, and its entry rules.

Its id, venue and events become MQTT topic levels and fields of every scan event, so they are checked
with the bus's own rules (gate/core/ids.py): an id a receiver would drop is refused here, up front.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gate.config.rules import Fail, check_events, check_ranges, check_time_of_day, check_venue, choice, ranged
from gate.core import ids


@dataclass
class GateSection:
    id: str = ""
    venue: str = ""
    profile: str = choice("turnstile", "handheld")
    events: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    direction: str = choice("in", "out")   # an exit-mode gate lets people out
    reentry: bool = False            # admit again after a recorded exit
    # Entry rules (gate/decide.py); a refusal is the `rules` verdict, its detail names the rule.
    doors_open: str = ""             # "19:00": no entry before this time of the venue day ("" = none)
    checkout: str = ""               # "03:00": everyone still inside is checked out; the venue day starts here
    # minutes between an exit and a re-entry (anti-passback); 0 = none
    reentry_after_min: int = ranged(0, 0, 100_000, " (0 = no limit)")
    entries_per_day: int = ranged(0, 0, 100_000, " (0 = no limit)")   # per ticket per venue day


def check(cfg, fail: Fail) -> None:
    """Id, venue and events as the bus accepts them; entry rules that parse and stay in range."""
    g = cfg.gate
    if g is None:
        return
    problem = ids.gate_id_problem(g.id)
    if problem:
        fail("gate.id", problem)
    check_venue(fail, "gate.venue", g.venue)
    for key in ("doors_open", "checkout"):
        check_time_of_day(fail, f"gate.{key}", getattr(g, key))
    check_ranges(g, "gate", fail)
    check_events(fail, "gate.events", g.events)
