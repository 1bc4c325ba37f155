"""The door alerts: each door as its status and health say, what stands for it, and which doors
Home Assistant should forget. (gate/house/doors.py keeps which device speaks for a door and flags
two devices and mode mismatches; its flags are read here, never recomputed.)

A door's record: its state (online / offline, and whether the offline was its last will, which
carries no time, or a goodbye, which does), its mode (a door in `test` mode is rehearsing), why it
is out of order when it has latched, when it was last heard, and how often its status flipped
lately. From them `conditions()` says what stands, as (key, kind, level, text, gate) for the
watch (gate/house/watch.py) to raise and clear:

- offline without a goodbye (its last will: power or network), `warn`;
- latched out of order, `critical`: it admits nobody until staff clear it;
- rehearsing while the venue is live (its status says `test`, or its scans are rehearsal scans),
  `warn`: its scans are not counted;
- rehearsing or live against the venue's mode, as gate/house/doors.py judges it (`mode_mismatch`);
- its identity used by two devices, `critical`: gate/house/doors.py's `duplicate` (the gate's own
  report of a second device, or its status changing hands between instances), or, for a door
  that carries no instance id, its status flipping between online and offline FLAP_CHANGES times
  within FLAP_MS, which is what two devices under one client id do to each other at the broker.

`retired()` names the doors whose Home Assistant entities should go: gone from the broker's
roster (`[house] roster`, the roster.json `gate broker config` writes; revoked ones too), or
silent for longer than `[house] forget_gate_after_h`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

from gate.core.clock import now_ms
from gate.house.gaps import MAX_GATES

log = logging.getLogger(__name__)

FLAP_MS, FLAP_CHANGES = 120_000, 4
REHEARSAL_QUIET_MS = 10 * 60_000    # a door's last rehearsal scan this old: it is no longer rehearsing
PSEUDO_GATES = frozenset({"pretix", "checkout"})   # the house's own names for check-ins made elsewhere


def _hhmm(ms: int) -> str:
    return time.strftime("%H:%M", time.localtime(ms / 1000))


class DoorAlerts:
    """Door records (the intake's thread writes through `heard`, the watch's reads): one lock."""

    def __init__(self, clock: Callable[[], int] = now_ms):
        self.clock = clock
        self.lock = threading.Lock()
        self.doors: dict[str, dict] = {}
        self.started = clock()

    def heard(self, gate: str, kind: str, obj: dict) -> None:
        """A gate's validated status or health (gate/bus/messages.py)."""
        now = self.clock()
        with self.lock:
            d = self.doors.get(gate)
            if d is None:
                if len(self.doors) >= MAX_GATES:
                    return
                d = self.doors[gate] = {"state": "unknown", "heard": None, "flips": deque(maxlen=FLAP_CHANGES)}
            if kind != "status":
                d["heard"] = now
                if obj.get("duplicate"):
                    d["duplicate"] = obj["duplicate"]
                return
            if obj["state"] != d["state"] and d["state"] != "unknown":
                d["flips"].append(now)
            d.update(state=obj["state"], mode=obj.get("mode") or "", out_of_order=obj.get("out_of_order"),
                     since=now, goodbye=obj.get("ts") is not None, duplicate=obj.get("duplicate"))
            if obj["state"] == "online":
                d["was_online"] = True
                # a retained status may be weeks old: its own time says when the gate last spoke
                d["heard"] = max(d["heard"] or 0, obj.get("ts") or now)

    def states(self) -> dict[str, dict]:
        """gate -> its state, mode and latch, as its status says."""
        with self.lock:
            return {g: {"state": d.get("state"), "mode": d.get("mode", ""), "out_of_order": d.get("out_of_order")}
                    for g, d in self.doors.items()}

    def known(self) -> set[str]:
        with self.lock:
            return set(self.doors)

    def last_heard(self, gate: str) -> Optional[int]:
        with self.lock:
            d = self.doors.get(gate)
            return d["heard"] if d else None

    def conditions(self, venue_mode: str, rehearsing: dict, flags: Optional[dict] = None) -> list[tuple]:
        """What stands now for each door: (key, kind, level, text, gate); `rehearsing` is gate -> its
        last rehearsal scan while the venue was live (gate/house/flow.py); `flags` gate -> what
        gate/house/doors.py says of it (`duplicate`, `mode_mismatch`)."""
        now = self.clock()
        out = []
        flags = flags or {}
        with self.lock:
            doors = {g: dict(d, flips=list(d["flips"])) for g, d in self.doors.items()}
        for gate in sorted(set(doors) | set(rehearsing) | set(flags)):
            d, f = doors.get(gate, {}), flags.get(gate, {})
            if d.get("state") == "offline" and d.get("was_online") and not d.get("goodbye"):
                out.append((f"door:offline:{gate}", "door", "warn",
                            f"{gate} went offline at {_hhmm(d['since'])} without saying goodbye (power or network). "
                            "It goes on deciding by itself and reports when it is back; if it stays dark, "
                            "check its power and cable.", gate))
            if d.get("out_of_order"):
                out.append((f"door:latched:{gate}", "door", "critical",
                            f"{gate} is out of order ({d['out_of_order']}) and admits nobody until staff clear "
                            "it: send a steward, and patrons to another door.", gate))
            test_scan = rehearsing.get(gate)
            if venue_mode == "live" and (d.get("mode") == "test" and d.get("state") == "online"
                                         or test_scan is not None and now - test_scan < REHEARSAL_QUIET_MS):
                out.append((f"door:rehearsal:{gate}", "door", "warn",
                            f"{gate} is in rehearsal while the venue is live: its scans are not counted and the "
                            "tickets it takes are not shared. Switch it live with a staff card.", gate))
            elif f.get("mode_mismatch"):
                out.append((f"door:rehearsal:{gate}", "door", "warn",
                            f"{gate} is {f['mode_mismatch']}. Switch it to the venue's mode with a staff card.", gate))
            flips = [t for t in d.get("flips", ()) if now - t <= FLAP_MS]
            duplicate = f.get("duplicate") or d.get("duplicate")
            if duplicate:
                said = f" ({duplicate})" if isinstance(duplicate, str) else ""
                out.append((f"door:duplicate:{gate}", "door", "critical",
                            f"Two devices use the identity of {gate}{said}: a copied SD card or a spare switched on. "
                            "Find the second one and switch it off; their scans cannot be told apart.", gate))
            elif len(flips) >= FLAP_CHANGES:
                out.append((f"door:duplicate:{gate}", "door", "critical",
                            f"The status of {gate} flipped {len(flips)} times in {FLAP_MS // 60_000} minutes: two "
                            "devices may share its identity (a copied SD card), or its network keeps dropping. "
                            "Check for a second device first.", gate))
        return out

    def retired(self, gates: set[str], roster: Optional[dict], silent_ms: int, scanned: dict) -> set[str]:
        """Of `gates`, those Home Assistant should forget: not on the roster (or revoked there), or not
        heard for `silent_ms` (0 = never by silence). `scanned` is gate -> its last scan's time."""
        now = self.clock()
        out = set()
        for gate in gates - PSEUDO_GATES:
            if roster is not None and (gate not in roster["gates"] or gate in roster["revoked"]):
                out.add(gate)
                continue
            if silent_ms:
                heard = max(self.last_heard(gate) or 0, scanned.get(gate) or 0) or self.started
                if now - heard > silent_ms:
                    out.add(gate)
        return out


class RosterFile:
    """The broker's roster.json (`gate broker config`), read again when it changes; None while there
    is none configured or it cannot be read (then nothing leaves by the roster)."""

    def __init__(self, path: str):
        self.path = path
        self._mtime: Optional[float] = None
        self._roster: Optional[dict] = None
        self._complained = False

    def read(self) -> Optional[dict]:
        if not self.path:
            return None
        try:
            import os
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime:
                with open(self.path, encoding="utf-8") as f:
                    r = json.load(f)
                gates, revoked = r.get("gates"), r.get("revoked", [])
                if not (isinstance(gates, list) and isinstance(revoked, list)):
                    raise ValueError("no list of gates")
                self._roster = {"gates": {g for g in gates if isinstance(g, str)},
                                "revoked": {g for g in revoked if isinstance(g, str)}}
                self._mtime = mtime
                self._complained = False
        except (OSError, ValueError) as exc:
            if not self._complained:
                log.warning("house.roster: cannot read %s (%s): no door leaves Home Assistant by the roster",
                            self.path, exc)
                self._complained = True
            self._roster, self._mtime = None, None
        return self._roster
