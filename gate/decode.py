"""Reading barcodes from grey frames.

The live pipeline is staged so that empty frames, which are most frames, cost
one cheap pass:

1. every frame: a zero-copy half-resolution view (`y[::2, ::2]`) with the
   fast settings (no rotation, no inversion, no downscale pyramid), and 1-D
   codes on every sixth row at full horizontal detail;
2. every `full_every`-th frame: a full-resolution fast pass, for symbols too
   small to survive halving, and a look for bar regions (gate.vision.linear) that
   no row could read;
3. recovery, only where something was *seen* but not read: a failed
   detection's region, or a bar region. A held ticket is seen in many frames
   in a row, so the regions are tracked across frames (gate.vision.tracker) and each
   frame spends at most one bounded attempt on one of them, each attempt
   trying another means: a thorough re-read, a contrast-stretched one, bars
   integrated along their direction at other angles. With a full-resolution
   `main` frame beside the live one (a Pi's two camera streams), the region
   is cut from `main` instead, coordinates mapped, without a copy.

A still image (`gate decode`) gets one chance, not thirty a second, so it runs
the same stages, every recovery on every region, then a thorough full-frame
pass if all that found nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from gate.core.events import Code
from gate.vision.engines import (  # noqa: F401
    BAR_ANGLES,
    FORMAT_NAMES,
    MATRIX,
    MATRIX_STEPS,
    SYMBOLOGIES,
    code_from_bytes,
    flatten,
    make_engine,
    stretch,
)
from gate.vision.linear import grey_range
from gate.vision.tracker import Tracker

FOCUS_AFTER = 8         # failed attempts on seen-but-unread symbols before asking for a focus scan
MAX_STILL_SIDE = 2000   # bigger photos are read from a half-size view first
# Recovery attempts per region for a still image: every step once.
STILL_ATTEMPTS = {"bars": len(BAR_ANGLES), "matrix": len(MATRIX_STEPS)}


@dataclass
class DecodeStats:
    frames: int = 0
    retries: int = 0          # recovery attempts made
    recovered: int = 0        # frames read only thanks to a recovery attempt
    full_passes: int = 0
    bar_looks: int = 0


class Decoder:
    """The staged pipeline above, over one engine. `frame()` keeps state
    across calls (the tracked regions): use one Decoder per camera."""

    def __init__(self, symbologies=("qr", "code128"), engine="zxing", full_every=4):
        self.engine = make_engine(engine, symbologies)
        self.full_every = max(1, int(full_every))
        self.stats = DecodeStats()
        self.tracker = Tracker()
        self._failing = 0

    def frame(self, y: np.ndarray, main: Optional[np.ndarray] = None) -> list[Code]:
        """Codes in one live frame. `main`, when given, is the same moment at a
        higher resolution (any integer or fractional multiple of y's size)."""
        st = self.stats
        st.frames += 1
        codes, failed = self.engine.live(y)
        periodic = st.frames % self.full_every == 0
        if not codes and periodic:
            st.full_passes += 1
            contrast = grey_range(y)
            codes, more = self.engine.periodic(y, contrast)
            failed += more
            if not codes:
                st.bar_looks += 1
                self.tracker.see(st.frames, y, self.engine.find_bars(y, contrast), "bars")
        if codes:
            self._failing = 0
            self.tracker.clear()
            return codes
        self.tracker.see(st.frames, y, failed, "matrix")
        # A periodic frame has spent its share; its finds are tried from the next frame.
        cand = None if periodic else self.tracker.pick(st.frames)
        if cand is None:
            return []
        st.retries += 1
        codes = self._recover(y, main, cand.box, cand.kind, cand.tries)
        self.tracker.tried(cand, bool(codes), y)
        if codes:
            st.recovered += 1
            self._failing = 0
            self.tracker.clear()
        else:
            self._failing += 1
        return codes

    def _recover(self, y, main, box, kind, attempt, still=False) -> list[Code]:
        if kind == "bars":   # read_bars crops for itself, following the bars' slant
            src, sx, sy = (y, 1.0, 1.0) if main is None else (main, main.shape[1] / y.shape[1],
                                                                main.shape[0] / y.shape[0])
            scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            return self.engine.recover(src, kind, attempt, box=scaled, still=still)
        region, quad = _cut(y, main, box)
        return self.engine.recover(region, kind, attempt, quad, still=still)

    def wants_focus(self) -> bool:
        """True (once) when symbols have kept failing to decode: FOCUS_AFTER
        attempts without a read. The loop then asks the camera for a focus
        scan; the camera bounds how often it obliges."""
        if self._failing < FOCUS_AFTER:
            return False
        self._failing = 0
        return True

    def still(self, y: np.ndarray) -> list[Code]:
        """Codes in a still image: the live stages, every recovery, then a thorough pass."""
        view = y[::2, ::2] if max(y.shape) > MAX_STILL_SIDE else y  # big photos: the pyramid handles scale
        codes, failed = self.engine.live(view)
        if not codes:
            more_codes, more = self.engine.periodic(view, grey_range(view))
            codes, failed = more_codes, failed + more
        if not codes:
            regions = [(b, "matrix") for b in failed] + [(b, "bars") for b in self.engine.find_bars(view)]
            for box, kind in regions:
                for attempt in range(STILL_ATTEMPTS[kind]):
                    codes = self._recover(view, y if view is not y else None, box, kind, attempt, still=True)
                    if codes:
                        break
                if codes:
                    break
        if not codes:
            codes = self.engine.thorough(y)
        if not codes and y.size <= 4_000_000:
            codes = self.engine.thorough(stretch(y), upscale=False)
        if not codes and y.size <= 4_000_000:
            codes = self.engine.thorough(flatten(y), upscale=False)
        return _unique(codes)


def _cut(y: np.ndarray, main: Optional[np.ndarray], box):
    """The region of `box` (y's coordinates) with a margin, as a view of main
    when there is one (its coordinates scaled), else of y; and the symbol's
    quad, if known, in the region's coordinates. Returns (region, quad)."""
    h, w = y.shape
    x0, y0, x1, y1 = box[:4]
    # A failed detection's quad may cover only part of the symbol (a finder
    # or two under glare): take a generous margin.
    mx = my = max(40, int(0.6 * max(x1 - x0, y1 - y0)))
    x0, x1 = max(0, int(x0) - mx), min(w, int(x1) + mx)
    y0, y1 = max(0, int(y0) - my), min(h, int(y1) + my)
    sx = sy = 1.0
    src = y
    if main is not None:
        sy, sx = main.shape[0] / h, main.shape[1] / w
        src = main
    quad = getattr(box, "quad", None)
    if quad is not None:
        quad = tuple(((u - x0) * sx, (v - y0) * sy) for u, v in quad)
    return src[int(y0 * sy):int(y1 * sy), int(x0 * sx):int(x1 * sx)], quad


def _unique(codes: list[Code]) -> list[Code]:
    seen, out = set(), []
    for c in codes:
        if (c.format, c.raw) not in seen:
            seen.add((c.format, c.raw))
            out.append(c)
    return out


class Debouncer:
    """One verdict per presentation: a code seen again within `window` seconds
    of its last sighting is the same presentation; after a gap it is new."""

    def __init__(self, window: float = 2.0, clock=time.monotonic):
        self.window = window
        self.clock = clock
        self._last: dict[bytes, float] = {}

    def is_new(self, raw: bytes) -> bool:
        now = self.clock()
        last = self._last.get(raw)
        self._last[raw] = now
        if len(self._last) > 512:
            self._last = {k: t for k, t in self._last.items() if now - t <= self.window}
        return last is None or now - last > self.window
