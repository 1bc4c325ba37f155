"""The physical door: turnstile relay and passage sensors, handheld trigger.

Turnstile: an admission pulses the release relay (or holds it until someone
passes or the timeout ends). With a passage sensor fitted, an admission that
nobody walked through within the timeout is annulled: the ticket stays usable
and the event says so. A free-passage input (fire alarm) holds the turnstile
open for as long as it is active. Only a local admission ever moves the relay:
nothing that arrives over the network can. The relay itself belongs to
Feedback; the turnstile gets its `Release` handle and never closes it.

Out of order: a passage with no release before it, or the passage sensor
held active longer than `held_open_s` (a door propped open), contradicts the
relay. The turnstile reports it (`on_fault`) and, once latched by the loop,
keeps its relay shut until the latch is cleared. A ticket tagged for
assistance gets a longer release (and time to pass).

Handheld: the camera idles at a low rate; while the trigger is held (and a
moment after) it scans at full rate, and each press gives one verdict.

Sensor callbacks run on the pin library's thread: they only record and hand
work on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

from gpiozero import Button, DigitalInputDevice

from gate.core.worker import Worker

log = logging.getLogger(__name__)


class Turnstile(Worker):
    """Release relay, passage sensors and the timer that annuls an admission nobody used."""

    def __init__(self, ts_cfg, release, *, on_annul: Callable, on_exit_passage: Callable = None,
                 on_free_passage: Callable = None, on_fault: Callable[[str], None] = None, pin_factory=None):
        super().__init__("turnstile")
        self.cfg = ts_cfg
        self.relay = release                    # feedback.Release (pulse/hold/shut) or None
        self.on_annul = on_annul
        self.on_exit_passage = on_exit_passage
        self.on_free_passage = on_free_passage
        self.on_fault = on_fault
        self.pending: deque = deque()           # (deadline, token) awaiting a passage
        self.free = False
        self.latched = False                    # out of order: the relay stays shut
        self.active_since: Optional[float] = None   # the passage sensor has been active since
        self.released_until = 0.0               # a passage before this follows a release
        self._held_reported = False
        self.passages = 0
        self._cv = threading.Condition()
        self.devices: list[DigitalInputDevice] = []
        try:
            self.passage = self._input(ts_cfg.passage_pin, pin_factory)
            self.exit_passage = self._input(ts_cfg.exit_passage_pin, pin_factory)
            self.free_passage = self._input(ts_cfg.free_passage_pin, pin_factory)
        except Exception:
            for d in self.devices:   # a failed build closes what it already opened
                d.close()
            raise
        if self.passage:
            self.passage.when_activated = self._passed
            self.passage.when_deactivated = self._clear
        if self.exit_passage:
            self.exit_passage.when_activated = lambda *_: on_exit_passage and on_exit_passage()
        if self.free_passage:
            self.free_passage.when_activated = lambda *_: self._set_free(True)
            self.free_passage.when_deactivated = lambda *_: self._set_free(False)
        self.start()
        if self.free_passage is not None and self.free_passage.is_active:
            self._set_free(True)

    def _input(self, pin, pin_factory):
        if pin is None:
            return None
        dev = DigitalInputDevice(pin, pull_up=False, pin_factory=pin_factory)
        self.devices.append(dev)
        return dev

    def admit(self, token, assist: bool = False) -> None:
        """Release the turnstile for one admitted patron (longer when `assist`).

        One release, one passage: a new admission while an earlier one still
        waits means that patron has left the turnstile, so the earlier one is
        annulled now and the next passage belongs to the newest admission.
        """
        timeout = self.cfg.assist_timeout_s if assist else self.cfg.passage_timeout_s
        pulse_s = (self.cfg.assist_pulse_ms if assist else self.cfg.pulse_ms) / 1000
        with self._cv:
            if self.latched:
                return   # out of order: the loop should not have asked; the relay stays shut
            while self.pending:
                _, old = self.pending.popleft()
                if old is not None:
                    self.on_annul(old)
            self.released_until = time.monotonic() + max(timeout, pulse_s)
            if self.relay is not None and not self.free:
                if self.cfg.relay_mode == "hold":
                    self.relay.hold()
                else:
                    self.relay.pulse(pulse_s)
            if self.passage is not None:
                self.pending.append((time.monotonic() + timeout, token))
            elif self.cfg.relay_mode == "hold":
                self.pending.append((time.monotonic() + timeout, None))
            self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no admission awaits a passage (its annulment, if any, has been handed on)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self.pending, timeout)

    def latch(self, on: bool) -> None:
        """Out of order (relay shut, admissions refused) or back in service."""
        with self._cv:
            self.latched = on
            if not on and self.active_since is not None:
                self.active_since = time.monotonic()   # still held open: it gets its full time again
                self._held_reported = False
            if on:
                while self.pending:   # whoever was released has gone through or walked away
                    _, old = self.pending.popleft()
                    if old is not None:
                        self.on_annul(old)
                if self.relay is not None and not self.free:
                    self.relay.shut()
            self._cv.notify_all()

    def _fault(self, why: str) -> None:
        log.error("turnstile: %s", why)
        if self.on_fault:
            self.on_fault(why)

    def _clear(self, *_):
        with self._cv:
            self.active_since = None
            self._held_reported = False
            self._cv.notify_all()

    def _passed(self, *_):
        unreleased = False
        with self._cv:
            self.passages += 1
            self.active_since = time.monotonic()
            self._cv.notify_all()   # the timer watches for a door held open
            unreleased = (not self.pending and not self.free and not self.latched
                          and time.monotonic() > self.released_until)
            if self.pending:
                self.pending.popleft()
            if self.relay is not None and self.cfg.relay_mode == "hold" and not self.pending and not self.free:
                self.relay.shut()
            self._cv.notify_all()
        if unreleased and self.cfg.latch_unreleased_passage:
            self._fault("passage with no release")

    def _set_free(self, active: bool):
        with self._cv:
            self.free = active
            if self.relay is not None:
                if active:
                    self.relay.hold()
                elif not (self.cfg.relay_mode == "hold" and self.pending):
                    self.relay.shut()
        log.warning("free passage %s", "ACTIVE: turnstile held open" if active else "ended")
        if self.on_free_passage:
            self.on_free_passage(active)

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def run(self):
        with self._cv:
            while not self.stopping.is_set():
                now = time.monotonic()
                while self.pending and self.pending[0][0] <= now:
                    _, token = self.pending.popleft()
                    if self.relay is not None and self.cfg.relay_mode == "hold" and not self.pending and not self.free:
                        self.relay.shut()
                    if token is not None:
                        self.on_annul(token)
                    self._cv.notify_all()   # wait_idle() may be waiting for this
                wait = self.pending[0][0] - now if self.pending else None
                held = self.cfg.held_open_s
                if held and self.active_since is not None and not self.free and not self._held_reported:
                    due = self.active_since + held - now
                    if due <= 0:
                        self._held_reported = True
                        self._cv.release()   # the callback only queues, but never call out holding the lock
                        try:
                            self._fault(f"door held open {held:g} s")
                        finally:
                            self._cv.acquire()
                        continue
                    wait = due if wait is None else min(wait, due)
                self._cv.wait(wait)

    def close(self):
        """Stop the timer and release the sensors (the relay is Feedback's to switch off)."""
        self.stop(timeout=1.0)
        for d in self.devices:
            d.close()


class ScanRate:
    """A handheld camera's rate: full while scanning, idle otherwise; written only on a change
    (on picamera2 each write is a control request)."""

    def __init__(self, source, full_fps: float, idle_fps: float):
        self.source, self.full, self.idle = source, full_fps, idle_fps
        self.scanning: Optional[bool] = None
        self._lock = threading.Lock()

    def set(self, scanning: bool) -> None:
        with self._lock:
            if scanning != self.scanning:
                self.scanning = scanning
                self.source.set_rate(self.full if scanning else self.idle)


class Trigger:
    """A handheld's trigger: scanning is active while held and `linger` after."""

    def __init__(self, pin, linger: float, *, on_change: Callable[[bool], None] = None, pin_factory=None,
                 long_press_s: float = 0.0, on_long_press: Callable[[], None] = None):
        self.linger = linger
        self.on_change = on_change
        self.button: Optional[Button] = None
        self.released_at: Optional[float] = 0.0
        self.presses = 0
        self.answered = -1     # the press that already had its verdict
        if pin is not None:
            self.button = Button(pin, pull_up=True, pin_factory=pin_factory, hold_time=long_press_s or 1.0)
            self.button.when_pressed = self._pressed
            self.button.when_released = self._released
            if long_press_s and on_long_press:
                # A long press is a mode switch, not a scan: this press gives no verdict.
                self.button.when_held = lambda *_: self._long_press(on_long_press)

    def _pressed(self, *_):
        self.presses += 1
        self.released_at = None
        if self.on_change:
            self.on_change(True)

    def _released(self, *_):
        self.released_at = time.monotonic()

    def active(self) -> bool:
        """True while the trigger is held or within `linger` of its release."""
        if self.button is None:
            return True
        if self.released_at is None:
            return True
        return time.monotonic() - self.released_at <= self.linger and self.presses > 0

    def wants_verdict(self) -> bool:
        """One verdict per press."""
        return self.button is None or self.answered != self.presses

    def answered_press(self) -> None:
        self.answered = self.presses

    def _long_press(self, on_long_press: Callable[[], object]) -> None:
        self.answered_press()
        on_long_press()

    def close(self):
        if self.button is not None:
            self.button.close()
