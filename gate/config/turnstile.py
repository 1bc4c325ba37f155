"""[turnstile]: the relay's release, the passage sensors, accessible release and the out-of-order latch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from gate.config.rules import Fail, check_ranges, choice, pin, ranged


@dataclass
class TurnstileSection:
    relay_mode: str = choice("pulse", "hold")
    pulse_ms: int = ranged(200, 20, 10_000, " ms")
    passage_pin: Optional[int] = pin()        # confirms someone went through
    exit_passage_pin: Optional[int] = pin()
    free_passage_pin: Optional[int] = pin()   # fire alarm: hold open while active
    passage_timeout_s: float = ranged(5.0, 0.5, 120, " s")
    # Accessible release: a ticket with one of these tags gets a longer release / time to pass.
    assist_tags: list[str] = field(default_factory=lambda: ["wheelchair"])
    assist_pulse_ms: int = ranged(1500, 20, 30_000, " ms")
    assist_timeout_s: float = ranged(20.0, 0.5, 600, " s")
    # Out of order: the turnstile latches (relay off) until a staff card or `gate doctor --clear-latch`.
    # passage sensor active this long = door held open
    held_open_s: float = ranged(30.0, 0, 3600, " s (0 = never latch)")
    camera_lost_s: float = ranged(60.0, 0, 86400, " s (0 = never latch)")   # camera lost this long
    latch_unreleased_passage: bool = True     # a passage with no release latches


def check(cfg, fail: Fail) -> None:
    """A gate's turnstile timings are in range; a passage sensor needs a relay."""
    if cfg.gate is None:
        return
    t = cfg.turnstile
    check_ranges(t, "turnstile", fail)
    if cfg.gate.profile == "turnstile" and cfg.feedback.relay is None and t.passage_pin is not None:
        fail("turnstile.passage_pin", "a passage sensor without a relay (feedback.relay) confirms nothing")
