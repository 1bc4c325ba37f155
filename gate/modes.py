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
- The identity fault: another device is using this gate's id (gate/identity.py).
  The gate keeps deciding and showing, but as look-ups: it admits nobody until a
  staff card or `gate doctor --clear-latch` clears it (a file too, for the same
  reasons).

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
DUPLICATE_FILE = "identity-fault"
MAX_LATCH_BYTES = 256


@dataclass(frozen=True)
class ModeSnapshot:
    """The gate's mode, the venue's and the latch, as read at one moment."""
    mode: str = "entry"              # one of GATE_MODES
    venue: str = "live"              # live | test
    latched: Optional[str] = None    # why the gate is out of order, or None
    duplicate: Optional[str] = None  # another device uses this gate's identity: look-ups only

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
        # Without a storage directory (tests of parts) the latches live in memory only.
        self._latch = FileLatch(storage_dir, LATCH_FILE, "out-of-order latch")
        self._duplicate = FileLatch(storage_dir, DUPLICATE_FILE, "identity fault")
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
        """Mode, venue mode and latches as they are now (each latch read from its file once)."""
        return ModeSnapshot(self.mode, self.venue, self.latched(), self.duplicate())

    @property
    def event_mode(self) -> str:
        """The scan event's `mode` now (the latch is not read)."""
        return ModeSnapshot(self.mode, self.venue).event_mode

    # -- the latches -------------------------------------------------------------
    def latch(self, why: str) -> bool:
        """Latch out of order (kept on disk); returns True when newly latched."""
        if not self._latch.set(why):
            return False
        log.error("OUT OF ORDER: %s (a staff card or `gate doctor --clear-latch` clears it)", why)
        return True

    def latched(self) -> Optional[str]:
        """Why the gate is out of order, or None."""
        return self._latch.get()

    def flag_duplicate(self, why: str) -> bool:
        """Another device uses this gate's identity (kept on disk); True when newly flagged."""
        return self._duplicate.set(why)

    def duplicate(self) -> Optional[str]:
        """Why this gate admits nobody for now (another device with its id), or None."""
        return self._duplicate.get()

    def clear_latch(self, by: str = "") -> bool:
        """Clear the out-of-order latch and the identity fault; returns whether there was one."""
        latch, duplicate = self._latch.clear(), self._duplicate.clear()
        if latch:
            log.warning("out-of-order latch cleared%s", f" by {by}" if by else "")
        if duplicate:
            log.warning("identity fault cleared%s: this gate admits again", f" by {by}" if by else "")
        return latch or duplicate


class FileLatch:
    """A fault that holds until cleared: a small file in the storage directory (memory without one, or
    when the disk refuses), so it survives a restart and `gate doctor` (another process) sees and clears it."""

    def __init__(self, storage_dir, name: str, what: str):
        self.path = Path(storage_dir) / name if storage_dir is not None else None
        self.what = what
        self._memory: Optional[str] = None

    def set(self, why: str) -> bool:
        """Set it; False when it was already set."""
        if self.get():
            return False
        why = why[:MAX_LATCH_BYTES]
        if self.path is None:
            self._memory = why
            return True
        try:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(why + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:   # a full or read-only disk must not stop the latch in memory
            log.error("cannot record the %s: %s", self.what, exc)
            self._memory = why
        return True

    def get(self) -> Optional[str]:
        if self._memory:
            return self._memory
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as f:
                why = f.read(MAX_LATCH_BYTES).decode("utf-8", "replace").strip()
            return why or self.what
        except FileNotFoundError:
            return None
        except OSError:
            return f"{self.what} (unreadable)"

    def clear(self) -> bool:
        """Clear it; returns whether it was set."""
        was = self.get() is not None
        self._memory = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot clear the %s file %s: %s", self.what, self.path, exc.strerror)
        return was


def clear_latch_file(storage_dir) -> bool:
    """For `gate doctor --clear-latch`: remove the latches (out of order, identity fault) a running or
    stopped gate left; True when there was one."""
    cleared = False
    for name in (LATCH_FILE, DUPLICATE_FILE):
        try:
            os.unlink(Path(storage_dir) / name)
            cleared = True
        except FileNotFoundError:
            pass
    return cleared
