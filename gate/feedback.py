"""What the patron and the usher see and hear: LED, buzzer, relay, display.

`Feedback` is one gpiozero CompositeDevice of named parts (led, buzzer, relay),
built with an injected pin factory. Patterns play on their own thread: `show()`
only queues and returns, so the scan loop never waits on a beep. A newer
verdict cuts the current pattern short.

Feedback owns the relay: it builds it (off), and `close()` (idempotent, also on
SIGTERM and on crash via the context manager) turns it off before anything
else is released. The turnstile only gets `release`, a narrow handle that can
pulse, hold or shut the relay and goes inert once Feedback has closed.

While nothing else plays, the LED says what state the gate is in: a fault's
slow blink (FAULTS) or, with none, a rehearsal's (IDLE). A verdict given in
rehearsal ends with the rehearsal mark (cyan, low ticks), so nobody takes a
rehearsal admission for a live one; the display carries a banner meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Optional

from gpiozero import RGBLED, Buzzer, CompositeDevice, DigitalOutputDevice, TonalBuzzer
from gpiozero.tones import Tone

from gate.core.worker import Worker

log = logging.getLogger(__name__)

OFF, RED, GREEN, BLUE = (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)
YELLOW, MAGENTA, CYAN, WHITE = (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)


@dataclass(frozen=True)
class Step:
    ms: int
    colour: tuple = OFF
    tone: Optional[str] = None      # a note for a TonalBuzzer; any note = on for a plain buzzer


def _beeps(colour, total_ms, beeps, tone="A5"):
    """Colour held for total_ms while the buzzer sounds (on_ms, off_ms) pairs."""
    steps, used = [], 0
    for on, off in beeps:
        steps += [Step(on, colour, tone), Step(off, colour)]
        used += on + off
    if total_ms > used:
        steps.append(Step(total_ms - used, colour))
    steps.append(Step(0, OFF))
    return tuple(steps)


# One distinct pattern per verdict reason (the README's table is generated from this).
PATTERNS = {
    "ok":            _beeps(GREEN, 1000, [(80, 0)], "C6"),
    "reentry":       _beeps(GREEN, 1000, [(80, 80), (80, 0)], "C6"),
    "exit":          _beeps(BLUE, 800, [(80, 0)], "G5"),
    "already_used":  _beeps(RED, 2000, [(600, 0)], "A4"),
    "unknown":       _beeps(RED, 1500, [(100, 100)] * 3, "A4"),
    "forged":        tuple(s for _ in range(5) for s in (Step(100, RED, "E5"), Step(100, OFF))) + (Step(0, OFF),),
    "revoked":       _beeps(MAGENTA, 2000, [(400, 150), (100, 150), (400, 0)], "A4"),
    "blocked":       _beeps(MAGENTA, 2000, [(150, 150)] * 4, "D5"),
    "wrong_event":   _beeps(YELLOW, 2000, [(400, 200), (400, 0)], "A4"),
    "wrong_gate":    _beeps(CYAN, 2000, [(150, 400), (150, 0)], "A4"),
    "not_yet_valid": tuple(s for _ in range(3) for s in (Step(250, YELLOW, "E5" if _ == 0 else None), Step(250, OFF)))
                     + (Step(0, OFF),),
    "expired":       _beeps(YELLOW, 1500, [(800, 0)], "E4"),
    # An entry rule said no (doors not open, too soon back, entries used up): yellow/cyan alternating.
    "rules":         tuple(s for _ in range(2) for s in (Step(300, YELLOW, "D5"), Step(300, CYAN))) + (Step(0, OFF),),
    "not_passed":    _beeps(WHITE, 1000, [(300, 0)], "C4"),
}
# Not verdicts: a staff card was obeyed; a look-up (info mode) was shown; the gate is out of order.
SIGNALS = {
    "staff":        (Step(150, WHITE, "C6"), Step(150, GREEN, "E6"), Step(150, WHITE, "G6"), Step(300, GREEN),
                     Step(0, OFF)),
    "lookup":       (Step(600, CYAN, "G5"), Step(200, OFF), Step(600, CYAN), Step(0, OFF)),
    "out_of_order": tuple(s for _ in range(4) for s in (Step(150, RED, "C4"), Step(150, YELLOW))) + (Step(0, OFF),),
}
# Hospitality: played right after the verdict's own pattern for an admitted patron.
ATTENTION = {
    "notice": (Step(400, BLUE), Step(0, OFF)),
    "greet":  (Step(150, BLUE, "E6"), Step(150, GREEN, "G6"), Step(300, BLUE), Step(0, OFF)),
    "assist": (Step(300, WHITE, "C5"), Step(300, BLUE), Step(300, WHITE, "C5"), Step(300, BLUE), Step(0, OFF)),
}
# Faults: a slow blink shown while the gate is idle.
FAULTS = {
    "camera":  (Step(500, RED), Step(1500, OFF)),
    "tickets": (Step(500, YELLOW), Step(1500, OFF)),
    "clock":   (Step(500, MAGENTA), Step(1500, OFF)),
    "broker":  (Step(150, BLUE), Step(1850, OFF)),
    "latch":   (Step(250, RED), Step(250, YELLOW), Step(250, RED), Step(1250, OFF)),   # out of order
    "disk":    (Step(250, WHITE), Step(250, RED), Step(1500, OFF)),   # disk full or read-only
    # another device is using this gate's identity: look-ups only, nobody admitted
    "identity": (Step(250, MAGENTA), Step(250, BLUE), Step(250, MAGENTA), Step(250, BLUE), Step(1000, OFF)),
}
# Not faults: the state a gate is in, shown while idle when there is no fault.
IDLE = {
    "rehearsal": (Step(120, CYAN), Step(180, OFF), Step(120, CYAN), Step(2580, OFF)),   # double cyan, every 3 s
}
# Played after every verdict given in rehearsal (the gate's or the venue's): a live one never has it.
REHEARSAL_MARK = (Step(120, CYAN, "C5"), Step(120, OFF), Step(120, CYAN, "C5"), Step(120, OFF), Step(0, OFF))
# A verdict that could not be written (disk full): cuts its own pattern short; the relay stays shut.
UNRECORDED = tuple(s for _ in range(4) for s in (Step(150, WHITE, "C4"), Step(150, RED, "C4"))) + (Step(0, OFF),)


class Release:
    """The turnstile's handle on the relay: pulse, hold or shut; inert once closed."""

    def __init__(self, device):
        self._dev = device
        self._lock = threading.Lock()
        self._closed = False

    def pulse(self, seconds: float) -> None:
        with self._lock:
            if not self._closed:
                self._dev.blink(on_time=seconds, off_time=0, n=1, background=True)

    def hold(self) -> None:
        with self._lock:
            if not self._closed:
                self._dev.on()

    def shut(self) -> None:
        with self._lock:
            if not self._closed:
                self._dev.off()

    @property
    def is_open(self) -> bool:
        return bool(self._dev.value) if not self._closed else False

    def close(self) -> None:
        """Relay off for good (Feedback calls this first when it closes)."""
        with self._lock:
            self._closed = True
            self._dev.off()


class _Patterns(Worker):
    def __init__(self, feedback: "Feedback"):
        super().__init__("feedback")
        self.fb = feedback

    def wake(self) -> None:
        self.fb._cut.set()

    def run(self) -> None:
        self.fb._run(self.stopping)


class Feedback(CompositeDevice):
    """LED, buzzer and relay as one device; patterns run on a worker thread."""

    def __init__(self, *, led=None, buzzer=None, relay=None, display=None, pin_factory=None):
        parts = {k: v for k, v in (("led", led), ("buzzer", buzzer), ("relay", relay)) if v is not None}
        # Every attribute before gpiozero's __init__: if it fails, its __del__ calls close().
        self._queue: "queue.Queue" = queue.Queue()
        self._cut = threading.Event()
        self.display = display
        self.fault: Optional[str] = None
        self.idle: Optional[str] = None     # an IDLE pattern (rehearsal), shown when there is no fault
        self.banner: Optional[str] = None   # the display's standing line (rehearsal, identity fault)
        self._closed = False
        self.fitted = frozenset(parts)   # which of led, buzzer, relay this unit has
        self.release: Optional[Release] = Release(relay) if relay is not None else None
        self._worker = _Patterns(self)
        try:
            super().__init__(_order=sorted(parts), pin_factory=pin_factory, **parts)
        except Exception:
            self._closed = True
            for part in parts.values():
                part.close()
            raise
        self._worker.start()

    @classmethod
    def from_config(cls, fb, pin_factory=None, display=None) -> "Feedback":
        """Build the fitted parts from a [feedback] config section."""
        built = {}
        pins = [fb.led_red, fb.led_green, fb.led_blue]
        try:
            # The relay first, so that it is held off while the rest is set up.
            if fb.relay is not None:
                built["relay"] = DigitalOutputDevice(fb.relay, active_high=fb.relay_active_high,
                                                     initial_value=False, pin_factory=pin_factory)
            if any(p is not None for p in pins):
                if None in pins:
                    raise ValueError("feedback.led_red, led_green and led_blue are fitted together")
                built["led"] = RGBLED(*pins, pwm=False, pin_factory=pin_factory)
            if fb.buzzer is not None:
                built["buzzer"] = (TonalBuzzer(fb.buzzer, octaves=3, pin_factory=pin_factory) if fb.tonal_buzzer
                                   else Buzzer(fb.buzzer, pin_factory=pin_factory))
        except Exception:
            for part in built.values():   # a failed build closes what it already opened
                part.close()
            raise
        return cls(**built, display=display, pin_factory=pin_factory)

    # -- the scan loop's side: never blocks ---------------------------------
    def show(self, reason: str, level: str = "", lines: tuple = (), rehearsal: bool = False) -> None:
        """Play the pattern for a verdict reason (and attention level), with the rehearsal mark for a
        verdict given in rehearsal; returns at once."""
        steps = (PATTERNS.get(reason) or SIGNALS[reason]) + (ATTENTION.get(level, ()) if level else ())
        if rehearsal:
            steps = steps + REHEARSAL_MARK
        self._queue.put(steps)
        self._cut.set()
        if self.display is not None and lines:
            self.display.show(reason, lines)

    def show_unrecorded(self, lines: tuple = ()) -> None:
        """The verdict just shown could not be recorded (disk full or read-only): say so at once."""
        self._queue.put(UNRECORDED)
        self._cut.set()
        if self.display is not None and lines:
            self.display.show("unrecorded", lines)

    def set_fault(self, fault: Optional[str]) -> None:
        """Show a fault blink while idle (None clears it)."""
        if fault != self.fault:
            self.fault = fault
            self._cut.set()

    def set_idle(self, idle: Optional[str]) -> None:
        """The state shown while idle when there is no fault (an IDLE name, or None)."""
        if idle != self.idle:
            self.idle = idle
            self._cut.set()

    def set_banner(self, banner: Optional[str]) -> None:
        """A standing line on the display above every verdict (None removes it)."""
        if banner != self.banner:
            self.banner = banner
            if self.display is not None:
                self.display.set_banner(banner)

    # -- the worker ----------------------------------------------------------
    def _apply(self, step: Step) -> None:
        if "led" in self.fitted:
            self.led.value = step.colour
        if "buzzer" in self.fitted:
            bz = self.buzzer
            if isinstance(bz, TonalBuzzer):
                if step.tone:
                    bz.play(Tone(step.tone))
                else:
                    bz.stop()
            else:
                bz.value = bool(step.tone)

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                steps = self._queue.get(timeout=0.05)
            except queue.Empty:
                if stopping.is_set():
                    continue
                if self.fault:
                    steps = FAULTS[self.fault]
                elif self.idle:
                    steps = IDLE[self.idle]
                else:
                    continue
            # Cleared before the newest is taken and `stopping` is looked at: a show() or stop() that comes
            # from now on cuts what is played (cleared after, a stop() could be missed for a whole pattern).
            self._cut.clear()
            while not self._queue.empty():  # only the newest verdict matters
                steps = self._queue.get_nowait()
            if stopping.is_set():
                break
            try:
                for step in steps:
                    self._apply(step)
                    if step.ms and self._cut.wait(step.ms / 1000):
                        if self._queue.empty():
                            self._apply(Step(0, OFF))  # cut short with nothing to follow: go dark
                        break
            except Exception:  # a hardware fault must not end feedback for good
                log.exception("feedback pattern failed")
            if stopping.is_set():
                break
        try:
            self._apply(Step(0, OFF))
        except Exception:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.release is not None:
                self.release.close()
        finally:
            self._worker.stop(timeout=1.0)
            if self.display is not None:
                self.display.close()
            super().close()
