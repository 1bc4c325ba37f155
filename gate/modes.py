"""What a gate is doing right now: its mode, the venue's mode, and the
out-of-order latch.

- The gate's own mode: `entry` (admit), `exit` (let out), `info` (look a
  ticket up: the verdict it would get is shown, nothing is recorded, the
  event says `mode: "info"` and the house never counts it) or `test`
  (rehearsal: decided and recorded apart, never counted). It starts from the
  config (`direction`) and staff cards switch it; a restart returns to the
  config's mode.
- The venue's mode, from the signed control topic: `test` puts every gate in
  rehearsal; going `live` again clears the rehearsal uses from the store. It is
  kept on disk (gate/state/venuestate.py; applied by gate/staffrules.py).
- The out-of-order latch: a door whose sensors contradict the relay (a
  passage with no release, a door held open) or whose camera has been lost
  too long latches: relay off, its own pattern, reported on the status topic.
  Only a staff card or `gate doctor --clear-latch` clears it. The latch is a
  file in the gate's storage, so it survives a restart and the doctor (another
  process) can clear it.

What one presented code sees is a `ModeSnapshot`, read once (`GateMode.snapshot()`)
and passed down, so a code is never half decided in one mode and recorded in another.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gate.state import venuestate

log = logging.getLogger(__name__)

GATE_MODES = ("entry", "exit", "info", "test")
LATCH_FILE = "out-of-order"
MAX_LATCH_BYTES = 256


@dataclass(frozen=True)
class ModeSnapshot:
    """The gate's mode, the venue's and the latch, as read at one moment."""
    mode: str = "entry"              # one of GATE_MODES
    venue: str = "live"              # live | test
    latched: Optional[str] = None    # why the gate is out of order, or None

    @property
    def direction(self) -> str:
        return "out" if self.mode == "exit" else "in"

    @property
    def event_mode(self) -> str:
        """The scan event's `mode`: info for a look-up, test in rehearsal (the gate's or the venue's)."""
        if self.mode == "info":
            return "info"
        if self.mode == "test" or self.venue == "test":
            return "test"
        return "live"

    @property
    def history_mode(self) -> str:
        """Whose uses a ticket's history shows: the rehearsal's in test, else the real ones (a look-up too)."""
        return "test" if self.event_mode == "test" else "live"


class GateMode:
    """The gate's mode, the venue's mode and the latch, as they change (staff cards, the bus, the door)."""

    def __init__(self, storage_dir=None, direction: str = "in"):
        self.mode = self.configured = "exit" if direction == "out" else "entry"
        self.storage_dir = storage_dir
        # The venue's mode and the newest control message applied (its signed time), kept on disk.
        self.venue, self.venue_issued, _ = venuestate.load(storage_dir)
        # Without a storage directory (tests of parts) the latch lives in memory only.
        self.latch_path = Path(storage_dir) / LATCH_FILE if storage_dir is not None else None
        self._memory_latch: Optional[str] = None
        self.switched_by = ""

    # -- modes -----------------------------------------------------------------
    def switch(self, mode: str, by: str = "") -> bool:
        """A staff card's mode; returns whether anything changed."""
        if mode not in GATE_MODES:
            raise ValueError(f"unknown gate mode {mode!r}")
        changed = mode != self.mode
        self.mode, self.switched_by = mode, by
        if changed:
            log.warning("gate switched to %s mode%s", mode, f" by {by}" if by else "")
        return changed

    def snapshot(self) -> ModeSnapshot:
        """Mode, venue mode and latch as they are now (the latch is read from its file once)."""
        return ModeSnapshot(self.mode, self.venue, self.latched())

    @property
    def event_mode(self) -> str:
        """The scan event's `mode` now (the latch is not read)."""
        return ModeSnapshot(self.mode, self.venue).event_mode

    # -- the latch ---------------------------------------------------------------
    def latch(self, why: str) -> bool:
        """Latch out of order (kept on disk); returns True when newly latched."""
        if self.latched():
            return False
        why = why[:MAX_LATCH_BYTES]
        if self.latch_path is None:
            self._memory_latch = why
        else:
            try:
                tmp = self.latch_path.with_suffix(".tmp")
                tmp.write_text(why + "\n", encoding="utf-8")
                os.replace(tmp, self.latch_path)
            except OSError as exc:   # a full or read-only disk must not stop the latch in memory
                log.error("cannot record the out-of-order latch: %s", exc)
                self._memory_latch = why
        log.error("OUT OF ORDER: %s (a staff card or `gate doctor --clear-latch` clears it)", why)
        return True

    def latched(self) -> Optional[str]:
        """Why the gate is out of order, or None."""
        if self._memory_latch:
            return self._memory_latch
        if self.latch_path is None:
            return None
        try:
            with open(self.latch_path, "rb") as f:
                why = f.read(MAX_LATCH_BYTES).decode("utf-8", "replace").strip()
            return why or "out of order"
        except FileNotFoundError:
            return None
        except OSError:
            return "out of order (latch unreadable)"

    def clear_latch(self, by: str = "") -> bool:
        """Clear the latch; returns whether there was one."""
        was = self.latched() is not None
        self._memory_latch = None
        if self.latch_path is not None:
            clear_latch_file(self.latch_path.parent)
        if was:
            log.warning("out-of-order latch cleared%s", f" by {by}" if by else "")
        return was


def clear_latch_file(storage_dir) -> bool:
    """For `gate doctor --clear-latch`: remove the latch a (running or stopped) gate left."""
    try:
        os.unlink(Path(storage_dir) / LATCH_FILE)
        return True
    except FileNotFoundError:
        return False
