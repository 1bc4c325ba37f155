"""Mock pins that leave a trace: what an installed gate without GPIO hardware drove.

On a machine with no GPIO (plain Debian, a VM) the installer runs gate-scan on
gpiozero's mock pins. Those live inside the process, so nothing outside could
tell whether the relay was left on at a stop. With

    GPIOZERO_PIN_FACTORY=mock
    GPIOZERO_MOCK_PIN_CLASS=gaterecording
    GATE_MOCK_PIN_LOG=/var/lib/gate/mock-pins.log

gpiozero builds its mock pins from `RecordingPin` (registered under the entry
point group `gpiozero_mock_pin_classes`), which appends one line per state
change, `<unix time> GPIO<n> <0|1>`, and `<unix time> GPIO<n> released` when
the pin is closed. It is never used with real pins.
"""

from __future__ import annotations

import os
import threading
import time

from gpiozero.pins.mock import MockPWMPin

ENV = "GATE_MOCK_PIN_LOG"
MAX_BYTES = 1 << 20      # a looping replay must not fill the disk: the log starts over past this

_lock = threading.Lock()
_fd = None


def _write(line: str) -> None:
    global _fd
    path = os.environ.get(ENV)
    if not path:
        return
    data = line.encode()
    with _lock:
        try:
            if _fd is None:
                _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            if os.fstat(_fd).st_size > MAX_BYTES:
                os.ftruncate(_fd, 0)
            # A few bytes into the page cache per change: cheap enough for the loop's thread.
            os.write(_fd, data)
        except OSError:
            pass   # a probe that cannot write must not stop the gate


class RecordingPin(MockPWMPin):
    """gpiozero's mock PWM pin, also written to $GATE_MOCK_PIN_LOG on every change."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        _write(f"{time.time():.3f} {info.name} {int(bool(self._state))}\n")

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            _write(f"{time.time():.3f} {self.info.name} {int(bool(value))}\n")
        return changed

    def close(self):
        super().close()
        if not getattr(self, "_released", False):   # gpiozero may close a pin twice
            self._released = True
            _write(f"{time.time():.3f} {self.info.name} released\n")
