"""The usher's small display: verdict, holder, seat and greeting.

Drawing runs on its own thread with a latest-only slot, so a slow I2C bus
never holds up the scan loop. A banner (a gate in rehearsal, or one whose
identity another device uses) stands above whatever is shown, and alone while
nothing is. The console display writes to stderr; the
OLED one uses luma.oled (optional extra `oled`).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

from gate.core.worker import LatestOnly

log = logging.getLogger(__name__)


class Display(LatestOnly):
    """Base: keeps the newest content and draws it on a worker thread."""

    def __init__(self):
        super().__init__("display")
        self.content: Optional[tuple] = None
        self.history: list[tuple] = []
        self.banner: Optional[str] = None
        self._lines: tuple = ()          # the last lines shown, without the banner
        self.start()

    def show(self, reason: str, lines: tuple) -> None:
        self._lines = tuple(lines)
        self.offer(self._with_banner())

    def set_banner(self, banner: Optional[str]) -> None:
        """A standing first line (None removes it); redrawn at once over what is shown."""
        if banner != self.banner:
            self.banner = banner
            self.offer(self._with_banner())

    def _with_banner(self) -> tuple:
        return ((self.banner,) if self.banner else ()) + self._lines

    def handle(self, lines: tuple) -> None:
        try:
            self.draw(lines)
        except Exception:
            log.exception("display failed")
            return
        self.content = lines
        self.history.append(lines)
        del self.history[:-50]

    def draw(self, lines: tuple) -> None:  # pragma: no cover - overridden
        pass

    def close(self) -> None:
        self.stop(timeout=1.0)


class ConsoleDisplay(Display):
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        super().__init__()

    def draw(self, lines):
        from gate.verdict_text import printable
        self.stream.write("┃ " + " │ ".join(printable(line) for line in lines) + "\n")
        self.stream.flush()


class OledDisplay(Display):
    """SSD1306 / SH1106 128x64 over I2C."""

    def __init__(self, kind: str, port: int = 1, address: int = 0x3C):
        try:
            from luma.core.interface.serial import i2c
            from luma.core.render import canvas
            from luma.oled import device as oled
        except ImportError:
            raise RuntimeError("an OLED display needs luma.oled: pip install 'gate[oled]'") from None
        self.canvas = canvas
        self.device = getattr(oled, kind)(i2c(port=port, address=address))
        super().__init__()

    def draw(self, lines):
        with self.canvas(self.device) as draw:
            for i, line in enumerate(lines[:5]):
                draw.text((0, i * 12), line[:21], fill="white")


def make_display(kind: str) -> Display:
    if kind == "console":
        return ConsoleDisplay()
    return OledDisplay(kind)
