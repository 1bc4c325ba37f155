"""[handheld]: the trigger and mode buttons of a handheld gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gate.config.rules import Fail, check_ranges, pin, ranged


@dataclass
class HandheldSection:
    trigger_pin: Optional[int] = pin()
    linger_s: float = ranged(0.7, 0, 10, " s")   # keep scanning this long after release
    mode_pin: Optional[int] = pin()              # a second button: look-up (info) mode on / off
    # holding the trigger this long toggles look-up mode (0 = off)
    long_press_s: float = ranged(0.0, 0, 30, " s (0 = off)")


def check(cfg, fail: Fail) -> None:
    """A handheld gate's timings are in range."""
    if cfg.gate is not None:
        check_ranges(cfg.handheld, "handheld", fail)
