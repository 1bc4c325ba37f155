"""[camera]: where frames come from (or codes, for a barcode reader) and how the camera is driven."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from gate.config.rules import Fail, check_ranges, ranged

SOURCE_RE = re.compile(r"^(picamera2|(v4l2|hid|serial|replay):.+)$")


@dataclass
class CameraSection:
    source: str = "picamera2"
    width: int = ranged(640, 16, 4608)
    height: int = ranged(480, 16, 3456)
    fps: int = ranged(30, 1, 120)
    idle_fps: int = ranged(5, 1, "fps", " (and not above camera.fps)")   # handheld: while the trigger is released
    # caps auto-exposure so a moving ticket stays sharp
    max_exposure_us: int = ranged(8000, 100, 1_000_000)
    autofocus: bool = True           # Camera Module 3 only; ignored where unsupported
    # dioptres; fixes focus instead of autofocus
    lens_position: Optional[float] = ranged(None, 0, 32, " dioptres")
    # picamera2: main stream at this many times the size, for re-reads; 1 = none
    main_scale: int = ranged(2, 1, 4, " (1 = no main stream)")
    # least time between focus scans when codes keep failing; 0 = never
    refocus_s: float = ranged(3.0, 0, 3600, " s (0 = never)")
    stall_s: float = ranged(2.0, 0.1, 60, " s")   # no frame for this long = camera lost


def check(cfg, fail: Fail) -> None:
    """A reader source parses as the gate will open it; a gate's source and ranges."""
    c = cfg.camera
    if c.source.startswith(("hid:", "serial:")):   # the gate opens it with the same parser
        from gate.core.readerspec import parse_reader_spec
        try:
            parse_reader_spec(c.source)
        except ValueError as exc:
            fail("camera.source", str(exc))
    if cfg.gate is None:
        return
    if not SOURCE_RE.match(c.source):
        fail("camera.source", f"{c.source!r}: use picamera2, v4l2:/dev/videoN, hid:/dev/input/..., "
                              "serial:/dev/ttyACM0[@BAUD] or replay:PATH[@FPS]")
    check_ranges(c, "camera", fail)
