"""One device per gate identity: noticing a second one, and not fighting it.

The broker (`use_username_as_clientid`) lets one connection hold a gate id's session at
a time. A second device with the same id and password (a cloned SD card) takes it over.
An MQTT v5 broker may say so (DISCONNECT, reason 0x8E "Session taken over"); Mosquitto
2.0.11, Debian bookworm's, just closes the socket, like a network blip. Left to paho,
both would reconnect every second and swap the session for ever; worse, each would take
the other's scans for its own echo, so a ticket could be admitted at both.

What counts as evidence that another device uses this identity (each gate announces its
instance id, gate/state/instance.py, on its status topic and in its scans):
- a status on our own status topic from another instance that is `online` (the retained
  one we find on connecting: the other device is, or was until a moment ago, connected;
  one stamped more than STALE_STATUS_MS ago is a device long gone, e.g. the one this
  Pi replaced: a live clone says so again within TAKEOVER_MAX_S);
- after our session was taken over, any status there from another instance;
- a scan under our gate id from another instance.
A takeover by a connection that announces nothing (`gate doctor`, a tool run with this
gate's credentials) is logged, not latched: after it we find our own status unchanged.

What the gate does then (gate/admission.py): it latches the fault, shows it (idle
pattern, display, log, health, status topic, `gate doctor`) and stops admitting: each
device heard only part of the venue's scans (the session, and what was queued in it,
went to whichever held it), so neither may admit without the other's record. It keeps
deciding and showing what each ticket would get, as a look-up, and keeps its link:
after a takeover (said by the broker, or any lost connection once the other device is
known) it waits TAKEOVER_FIRST_S, then twice as long each time (up to TAKEOVER_MAX_S)
before taking the session back, so two clones swap every few minutes, not every second.
Runs on paho's network thread; hands the fault to the loop.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from gate.core.clock import clock_synchronised, now_ms

log = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
TAKEOVER_FIRST_S = 5      # the first wait after a takeover: soon enough to see who it was
TAKEOVER_MAX_S = 300      # never longer than this between attempts (the outbox still drains)
TAKEOVER_QUIET_S = 600    # a session held this long without a takeover: the next one starts over
STALE_STATUS_MS = 2 * TAKEOVER_MAX_S * 1000   # another instance's status older than this is no evidence


def clash_words(gate: str, other: str) -> str:
    """The fault, as the operator reads it everywhere."""
    who = f" (instance {other})" if other else ""
    return f"another device{who} is using {gate}'s identity"


class IdentityWatch:
    """Evidence of a second device under this gate id, and the back-off after a takeover."""

    def __init__(self, gate: str, instance: str, on_clash: Optional[Callable[[str], None]] = None,
                 clock=time.monotonic):
        self.gate, self.instance = gate, instance
        self.on_clash = on_clash
        self.clock = clock
        self.takeovers = 0              # sessions taken over from us since the process started
        self._streak = 0                # takeovers since the session was last held quietly
        self._taken_at: Optional[float] = None   # the last takeover, until the next connection settles it
        self._connected_at: Optional[float] = None
        self._first_status = False      # the next status on our topic is the one found on connecting
        self.clash: str = ""            # the evidence, once seen (the loop latches it)

    # -- the connection ---------------------------------------------------------
    def taken_over(self, told: bool = True) -> int:
        """Our session was taken over (`told` by the broker), or the connection was lost while another
        device is known to use our id: log it; returns how long to wait before taking the session back."""
        now = self.clock()
        if self._connected_at is not None and now - self._connected_at >= TAKEOVER_QUIET_S:
            self._streak = 0
        self.takeovers += 1
        self._streak += 1
        self._connected_at = None
        wait = min(TAKEOVER_MAX_S, TAKEOVER_FIRST_S * 2 ** (self._streak - 1))
        if told:
            self._taken_at = now
            log.warning("the broker handed %s's session to another connection (session taken over): another "
                        "device with this gate's id and password, or a tool run with them; reconnecting in %d s, "
                        "not at once", self.gate, wait)
        else:
            log.warning("disconnected while %s: it holds the session now, or soon will; reconnecting in %d s, "
                        "not at once", self.clash, wait)
        return wait

    def connected(self) -> None:
        self._connected_at = self.clock()
        self._first_status = True

    # -- what arrives on our own topics -------------------------------------------
    def status(self, st: dict) -> None:
        """A status on our own status topic (validated: gate/bus/messages.py unpack_status)."""
        first, self._first_status = self._first_status, False
        other = st.get("instance", "")
        if other == self.instance and self.instance:
            if first and self._taken_at is not None:
                log.warning("%s's session was taken over by a connection that did not announce itself (gate "
                            "doctor, or a tool using this gate's credentials): not another gate", self.gate)
                self._taken_at = None
            return
        if not self.instance:
            return   # we announce none ourselves: nothing to tell apart
        if other and st.get("state") == "online" and not self._stale(st.get("ts")):
            self._seen(other, "its status says it is online under this gate id")
        elif self._taken_at is not None and (other or st.get("ts") is not None):
            # After a takeover, a status from anyone but us (an older version announces no instance).
            self._seen(other, "it took this gate's session over and announced itself")

    @staticmethod
    def _stale(ts) -> bool:
        """A status stamped long ago by a clock that agrees with ours (an unsynchronised one proves nothing)."""
        return ts is not None and clock_synchronised() and now_ms() - ts > STALE_STATUS_MS

    def follow(self, latched: Optional[str]) -> None:
        """The loop's latch (the scan loop's thread): set from before a restart, or cleared by a staff card or
        `gate doctor --clear-latch`; after a clear the next evidence latches (and is said) again."""
        if latched and not self.clash:
            self.clash = latched   # latched before this start: do not fight for the session either
        elif not latched and self.clash:
            self.clash, self._streak, self._taken_at = "", 0, None

    def scan(self, instance: str) -> bool:
        """A scan under our gate id: True when it is another device's (apply it as another gate's)."""
        if not instance or not self.instance or instance == self.instance:
            return False
        self._seen(instance, "a scan under this gate id came from it")
        return True

    def _seen(self, other: str, how: str) -> None:
        if self.clash:
            return
        self.clash = clash_words(self.gate, other)
        log.error("IDENTITY CLASH: %s: %s. Two devices with one gate id each hear only part of the venue's scans, so this one "
                  "no longer admits (it shows what a ticket would get). Find the other device (a copy of this "
                  "SD card?), switch it off or give it its own gate id (gate broker config --gates), then clear "
                  "the fault with a staff card or `gate doctor --clear-latch`", self.clash, how)
        if self.on_clash is not None:
            self.on_clash(self.clash)
