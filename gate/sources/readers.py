"""Barcode scanners that decode by themselves: USB keyboard-mode (HID) and serial.

They are not cameras: they hand over decoded codes, not frames, so they have
their own small interface, `CodeSource`, whose `read()` gives one `Code` (or
None on timeout). The scan loop puts those codes through the same debounce ->
decide path as the camera's.

- `hid:/dev/input/eventN`: a scanner that types like a keyboard, read through
  the kernel's input events (python-evdev, extra `hid`). The device is grabbed
  so its keystrokes never reach a console or a login prompt. Keystrokes are
  turned back into text with the keyboard layout the scanner is set to (`us`
  or `de`), and a code ends at Enter or Tab (`[reader] terminator`).
- `serial:/dev/ttyACM0[@BAUD]`: a scanner in serial / USB-CDC mode (pyserial,
  extra `serial`); a code ends at CR, LF or Tab.

Everything a scanner sends is treated as hostile: a code longer than
`max_code` is dropped whole (and counted), as is a half-typed code that stops
mid-way (a scanner unplugged while typing), and no buffer grows without bound.
"""

from __future__ import annotations

import logging
import queue
import select
import threading
from typing import TYPE_CHECKING, Optional

from gate.core.errors import CameraError
from gate.core.events import Code
from gate.core.readerspec import parse_reader_spec
from gate.core.worker import Worker

if TYPE_CHECKING:   # evdev is imported on start: only a gate with a HID reader needs it
    from evdev import InputDevice

log = logging.getLogger(__name__)

GAP_S = 0.5          # a pause this long inside a code means the rest is not coming
DEFAULT_BAUD = 9600

# Keyboard layouts by key name: (plain, shift, altgr) characters per key. A scanner types
# each character of the code as the key that makes it on the layout it is set to.
_US_ROWS = [
    ("1234567890-=", "!@#$%^&*()_+", "KEY_1 KEY_2 KEY_3 KEY_4 KEY_5 KEY_6 KEY_7 KEY_8 KEY_9 KEY_0 KEY_MINUS KEY_EQUAL"),
    ("qwertyuiop[]", "QWERTYUIOP{}", "KEY_Q KEY_W KEY_E KEY_R KEY_T KEY_Y KEY_U KEY_I KEY_O KEY_P KEY_LEFTBRACE KEY_RIGHTBRACE"),
    ("asdfghjkl;'`", 'ASDFGHJKL:"~', "KEY_A KEY_S KEY_D KEY_F KEY_G KEY_H KEY_J KEY_K KEY_L KEY_SEMICOLON KEY_APOSTROPHE KEY_GRAVE"),
    ("\\zxcvbnm,./ ", "|ZXCVBNM<>? ", "KEY_BACKSLASH KEY_Z KEY_X KEY_C KEY_V KEY_B KEY_N KEY_M KEY_COMMA KEY_DOT KEY_SLASH KEY_SPACE"),
]
# German (T1): Z and Y swapped, umlauts, AltGr for @ { [ ] } \ ~ | and €. The dead keys
# (^ ´ `) are taken as the character itself: scanners follow them with a space.
_DE_ROWS = [
    ("1234567890ß´", '!"§$%&/()=?`', "KEY_1 KEY_2 KEY_3 KEY_4 KEY_5 KEY_6 KEY_7 KEY_8 KEY_9 KEY_0 KEY_MINUS KEY_EQUAL"),
    ("qwertzuiopü+", "QWERTZUIOPÜ*", "KEY_Q KEY_W KEY_E KEY_R KEY_T KEY_Y KEY_U KEY_I KEY_O KEY_P KEY_LEFTBRACE KEY_RIGHTBRACE"),
    ("asdfghjklöä^", "ASDFGHJKLÖÄ°", "KEY_A KEY_S KEY_D KEY_F KEY_G KEY_H KEY_J KEY_K KEY_L KEY_SEMICOLON KEY_APOSTROPHE KEY_GRAVE"),
    ("#yxcvbnm,.- <", "'YXCVBNM;:_ >", "KEY_BACKSLASH KEY_Z KEY_X KEY_C KEY_V KEY_B KEY_N KEY_M KEY_COMMA KEY_DOT KEY_SLASH KEY_SPACE KEY_102ND"),
]
_DE_ALTGR = {"KEY_Q": "@", "KEY_E": "€", "KEY_7": "{", "KEY_8": "[", "KEY_9": "]", "KEY_0": "}",
             "KEY_MINUS": "\\", "KEY_RIGHTBRACE": "~", "KEY_102ND": "|", "KEY_2": "²", "KEY_3": "³", "KEY_M": "µ"}
# The numeric keypad types the same on every layout (some scanners use it for digits).
_KEYPAD = {"KEY_KP0": "0", "KEY_KP1": "1", "KEY_KP2": "2", "KEY_KP3": "3", "KEY_KP4": "4", "KEY_KP5": "5",
           "KEY_KP6": "6", "KEY_KP7": "7", "KEY_KP8": "8", "KEY_KP9": "9", "KEY_KPMINUS": "-",
           "KEY_KPPLUS": "+", "KEY_KPASTERISK": "*", "KEY_KPSLASH": "/", "KEY_KPDOT": "."}
LAYOUTS = ("us", "de")
TERMINATORS = ("enter", "tab")


def keymap(layout: str) -> dict[str, tuple[str, str, str]]:
    """Key name -> (plain, shift, altgr) for a layout; '' where the key types nothing."""
    rows, altgr = {"us": (_US_ROWS, {}), "de": (_DE_ROWS, _DE_ALTGR)}[layout]
    out = {}
    for plain, shifted, names in rows:
        for p, s, name in zip(plain, shifted, names.split()):
            out[name] = (p, s, altgr.get(name, ""))
    for name, ch in _KEYPAD.items():
        out[name] = (ch, ch, "")
    return out


class Keystrokes:
    """Turns key events (code, value) back into codes. Pure: no device, no clock of its own."""

    def __init__(self, ecodes, layout: str = "us", terminator: str = "enter", max_code: int = 1024):
        table = keymap(layout)
        self.keys = {getattr(ecodes, name): chars for name, chars in table.items()}
        self.shift_keys = {ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT}
        self.altgr_keys = {ecodes.KEY_RIGHTALT}
        self.end_keys = ({ecodes.KEY_ENTER, ecodes.KEY_KPENTER} if terminator == "enter" else {ecodes.KEY_TAB})
        self.max_code = max_code
        self.shift = self.altgr = False
        self.buf: list[str] = []
        self.overflow = False
        self.last_key = 0.0
        self.dropped = {"oversized": 0, "unmapped": 0, "interrupted": 0}

    def feed(self, code: int, value: int, t: float) -> Optional[str]:
        """One key event (value 1 down, 0 up, 2 repeat) at time t; returns a finished code."""
        if code in self.shift_keys:
            self.shift = value != 0
            return None
        if code in self.altgr_keys:
            self.altgr = value != 0
            return None
        if value != 1:
            return None   # releases and auto-repeats carry no characters
        if self.buf and t - self.last_key > GAP_S:
            self.dropped["interrupted"] += 1
            self.buf, self.overflow = [], False
        self.last_key = t
        if code in self.end_keys:
            text, over = "".join(self.buf), self.overflow
            self.buf, self.overflow = [], False
            if over:
                self.dropped["oversized"] += 1
                return None
            return text or None
        chars = self.keys.get(code)
        ch = (chars[2] if self.altgr else chars[1] if self.shift else chars[0]) if chars else ""
        if not ch:
            self.dropped["unmapped"] += 1   # kept out of the code: never guessed
            return None
        if len(self.buf) >= self.max_code:
            self.overflow = True
        else:
            self.buf.append(ch)
        return None


class CodeSource:
    """A scanner that decodes by itself; `read()` returns one Code or None."""

    name = "code source"
    finished = False     # a live device never runs out
    fps = 0

    def start(self) -> None: ...

    def read(self, timeout: float) -> Optional[Code]:
        raise NotImplementedError

    def set_rate(self, fps: float) -> None:
        """Nothing to pace: the scanner reads at its own speed."""

    def close(self) -> None: ...


class HidSource(CodeSource):
    """A keyboard-mode USB scanner through evdev, grabbed for exclusive use."""

    def __init__(self, path: str, layout: str = "us", terminator: str = "enter", max_code: int = 1024):
        self.path, self.name = path, f"hid:{path}"
        self.layout, self.terminator, self.max_code = layout, terminator, max_code
        self.dev: Optional[InputDevice[str]] = None
        self.pending: list[Code] = []

    def start(self) -> None:
        try:
            from evdev import InputDevice, ecodes
        except ImportError:
            raise CameraError("hid: sources need python-evdev (pip install 'gate[hid]')") from None
        try:
            self.dev = InputDevice(self.path)
            self.dev.grab()   # its keystrokes must not reach a console or a login prompt
        except OSError as exc:
            self.close()
            raise CameraError(f"{self.path}: {exc.strerror or exc} (is the gate user in the 'input' group?)") from None
        self.keys = Keystrokes(ecodes, self.layout, self.terminator, self.max_code)
        self.ev_key = ecodes.EV_KEY

    def read(self, timeout: float) -> Optional[Code]:
        if self.pending:
            return self.pending.pop(0)
        if self.dev is None:
            raise CameraError(f"{self.path}: not open")
        try:
            ready, _, _ = select.select([self.dev.fd], [], [], timeout)
            if not ready:
                return None
            events = list(self.dev.read())
        except BlockingIOError:
            return None
        except OSError as exc:   # unplugged: the loop's watchdog reports it and restarts us
            raise CameraError(f"{self.path}: {exc.strerror or exc}") from None
        for ev in events:
            if ev.type == self.ev_key:
                text = self.keys.feed(ev.code, ev.value, ev.timestamp())
                if text is not None:
                    self.pending.append(Code("hid", text.encode("utf-8"), text))
        return self.pending.pop(0) if self.pending else None

    def close(self) -> None:
        dev, self.dev = self.dev, None
        if dev is not None:
            try:
                dev.ungrab()
            except OSError:
                pass
            dev.close()


class SerialSource(CodeSource):
    """A scanner in serial or USB-CDC mode through pyserial; codes end at CR, LF or Tab."""

    ENDS = b"\r\n\t"

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, max_code: int = 1024):
        self.port, self.baud, self.max_code = port, baud, max_code
        self.name = f"serial:{port}@{baud}"
        self.ser = None
        self.buf = bytearray()
        self.overflow = False
        self.pending: list[Code] = []
        self.dropped = {"oversized": 0}

    def start(self) -> None:
        try:
            import serial
        except ImportError:
            raise CameraError("serial: sources need pyserial (pip install 'gate[serial]')") from None
        try:
            self.ser = serial.Serial(self.port, self.baud, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise CameraError(f"{self.port}: {exc}") from None

    def read(self, timeout: float) -> Optional[Code]:
        if self.pending:
            return self.pending.pop(0)
        if self.ser is None:
            raise CameraError(f"{self.port}: not open")
        try:
            ready, _, _ = select.select([self.ser.fileno()], [], [], timeout)
            # What the driver holds, not read(n): a tty can wake select with nothing to read.
            waiting = self.ser.in_waiting if ready else 0
            data = self.ser.read(min(waiting, 4096)) if waiting else b""
        except OSError as exc:   # pyserial's SerialException is an OSError: unplugged
            raise CameraError(f"{self.port}: {exc}") from None
        for b in data:
            if b in self.ENDS:
                if self.overflow:
                    self.dropped["oversized"] += 1
                elif self.buf:
                    raw = bytes(self.buf)
                    self.pending.append(Code("serial", raw, raw.decode("utf-8", "backslashreplace")))
                self.buf.clear()
                self.overflow = False
            elif len(self.buf) >= self.max_code:
                self.overflow = True
            else:
                self.buf.append(b)
        return self.pending.pop(0) if self.pending else None

    def close(self) -> None:
        ser, self.ser = self.ser, None
        if ser is not None:
            ser.close()


def open_reader(spec: str, reader_cfg=None, max_code: int = 1024) -> CodeSource:
    """`hid:PATH` or `serial:PATH[@BAUD]` -> a CodeSource (not started)."""
    kind, path, baud = parse_reader_spec(spec)
    if kind == "hid":
        layout = reader_cfg.layout if reader_cfg else "us"
        term = reader_cfg.terminator if reader_cfg else "enter"
        return HidSource(path, layout, term, max_code)
    return SerialSource(path, baud or DEFAULT_BAUD, max_code)


def is_reader(spec: str) -> bool:
    return spec.startswith(("hid:", "serial:"))


class CodeCapture(Worker):
    """The capture thread for a CodeSource: hands codes to the loop through the same kind of
    queue as frames. No stall watchdog (an idle scanner is silent, not stalled); a device that
    fails (unplugged) is reported as the camera lost and reopened with a backoff."""

    def __init__(self, source: CodeSource):
        super().__init__("reader")
        self.source = source
        self.frames: "queue.Queue" = queue.Queue(maxsize=64)   # codes; a person scans a few a second
        self.done = threading.Event()
        self.camera_ok = True
        self.camera_error = ""
        self.dropped = 0

    def run(self) -> None:
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                try:
                    code = self.source.read(0.25)
                except CameraError as exc:
                    if self.camera_ok:
                        log.error("scanner lost: %s", exc)
                    self.camera_ok, self.camera_error = False, str(exc)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 10)
                    try:
                        self.source.close()
                        self.source.start()
                        self.camera_ok, self.camera_error, backoff = True, "", 0.5
                        log.info("scanner reopened")
                    except CameraError as again:
                        self.camera_error = str(again)
                    continue
                if code is None:
                    if self.source.finished:
                        break
                    continue
                try:
                    self.frames.put_nowait(code)
                except queue.Full:
                    self.dropped += 1
        finally:
            self.done.set()

    def discard(self) -> None:
        while True:
            try:
                self.frames.get_nowait()
            except queue.Empty:
                return
