"""The physical door: turnstile relay and passage sensors, handheld trigger.

Turnstile: an admission pulses the release relay (or holds it until someone
passes or the timeout ends). With a passage sensor fitted, an admission that
nobody walked through within the timeout is annulled: the ticket stays usable
and the event says so. A free-passage input (fire alarm) holds the turnstile
open for as long as it is active. Only a local admission ever moves the relay:
nothing that arrives over the network can. The relay itself belongs to
Feedback; the turnstile gets its `Release` handle and never closes it.

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

from gate.worker import Worker

log = logging.getLogger("gate.door")


class Turnstile(Worker):
    """Release relay, passage sensors and the timer that annuls an admission nobody used."""

    def __init__(self, ts_cfg, release, *, on_annul: Callable, on_exit_passage: Callable = None,
                 on_free_passage: Callable = None, pin_factory=None):
        super().__init__("turnstile")
        self.cfg = ts_cfg
        self.relay = release                    # feedback.Release (pulse/hold/shut) or None
        self.on_annul = on_annul
        self.on_exit_passage = on_exit_passage
        self.on_free_passage = on_free_passage
        self.pending: deque = deque()           # (deadline, token) awaiting a passage
        self.free = False
        self.passages = 0
        self._cv = threading.Condition()
        self.devices = []
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

    def admit(self, token) -> None:
        """Release the turnstile for one admitted patron.

        One release, one passage: a new admission while an earlier one still
        waits means that patron has left the turnstile, so the earlier one is
        annulled now and the next passage belongs to the newest admission.
        """
        timeout = self.cfg.passage_timeout_s
        with self._cv:
            while self.pending:
                _, old = self.pending.popleft()
                if old is not None:
                    self.on_annul(old)
            if self.relay is not None and not self.free:
                if self.cfg.relay_mode == "hold":
                    self.relay.hold()
                else:
                    self.relay.pulse(self.cfg.pulse_ms / 1000)
            if self.passage is not None:
                self.pending.append((time.monotonic() + timeout, token))
            elif self.cfg.relay_mode == "hold":
                self.pending.append((time.monotonic() + timeout, None))
            self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no admission awaits a passage (its annulment, if any, has been handed on)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self.pending, timeout)

    def _passed(self, *_):
        with self._cv:
            self.passages += 1
            if self.pending:
                self.pending.popleft()
            if self.relay is not None and self.cfg.relay_mode == "hold" and not self.pending and not self.free:
                self.relay.shut()
            self._cv.notify_all()

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

    def __init__(self, pin, linger: float, *, on_change: Callable[[bool], None] = None, pin_factory=None):
        self.linger = linger
        self.on_change = on_change
        self.button: Optional[Button] = None
        self.released_at: Optional[float] = 0.0
        self.presses = 0
        self.answered = -1     # the press that already had its verdict
        if pin is not None:
            self.button = Button(pin, pull_up=True, pin_factory=pin_factory)
            self.button.when_pressed = self._pressed
            self.button.when_released = self._released

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

    def close(self):
        if self.button is not None:
            self.button.close()
