"""Regions where a symbol was seen but not read, followed across frames.

A ticket held up to the camera stays in view for many frames and moves
little, so a region found once is worth retrying in the frames after it,
each time by another means, without finding it again. The cost stays bounded:
one attempt per frame (the caller's), a handful of regions, each given up
after MAX_TRIES attempts. A region given up on stays muted while its pixels
stay the same, so a barcode-like poster or railing in the background costs
nothing after its first few attempts, yet a ticket held in front of it is
tried afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

MAX_TRIES = {"matrix": 8, "bars": 3}  # attempts per region before it is muted (each step once)
KEEP = 6           # frames a region is kept without being seen again
MAX_REGIONS = 6
MAX_MUTED = 16


@dataclass
class Region:
    box: tuple                 # x0, y0, x1, y1 in frame pixels
    kind: str                  # "matrix" (a failed detection) | "bars"
    last: int                  # frame number last seen
    tries: int = 0
    seen: int = 1


@dataclass
class _Muted:
    box: tuple
    kind: str
    thumb: np.ndarray = field(repr=False)


def _overlap(a, b) -> bool:
    """True when two boxes share at least a third of the smaller one."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return False
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy * 3 >= small


def _thumb(y: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    return np.asarray(y[max(0, y0):max(0, y1):8, max(0, x0):max(0, x1):8], dtype=np.int16)


class Tracker:
    def __init__(self):
        self.regions: list[Region] = []
        self.muted: list[_Muted] = []

    def clear(self) -> None:
        """A code was read: the regions belonged to it (or do not matter now)."""
        self.regions.clear()

    def see(self, frame: int, y: np.ndarray, boxes, kind: str) -> None:
        """Record this frame's sightings of `kind`."""
        for box in boxes:
            if self._is_muted(y, box, kind):
                continue
            for r in self.regions:
                if r.kind == kind and _overlap(r.box, box):
                    # A full-resolution sighting's corners are worth more than
                    # a later half-resolution one's (the bend steps use them).
                    if getattr(box, "fine", True) or not getattr(r.box, "fine", False):
                        if getattr(box, "fine", False) and not getattr(r.box, "fine", True):
                            r.tries = 0      # the first sharp view: its steps start over (bounded: once)
                        r.box = box
                    r.last, r.seen = frame, r.seen + 1
                    break
            else:
                self.regions.append(Region(box, kind, frame))
        self.regions = [r for r in self.regions if frame - r.last <= KEEP][-MAX_REGIONS:]

    def pick(self, frame: int) -> Optional[Region]:
        """The region to try in this frame: the least tried, then the most seen."""
        live = [r for r in self.regions if r.tries < MAX_TRIES[r.kind] and frame - r.last <= KEEP]
        if not live:
            return None
        return min(live, key=lambda r: (r.tries, -r.seen))

    def tried(self, region: Region, ok: bool, y: Optional[np.ndarray] = None) -> None:
        region.tries += 1
        if not ok and region.tries >= MAX_TRIES[region.kind] and y is not None:
            self.muted = (self.muted + [_Muted(region.box, region.kind, _thumb(y, region.box))])[-MAX_MUTED:]

    def _is_muted(self, y: np.ndarray, box, kind: str) -> bool:
        for m in self.muted:
            if m.kind == kind and _overlap(m.box, box):
                now = _thumb(y, m.box)
                if now.shape == m.thumb.shape and float(np.abs(now - m.thumb).mean()) < 6.0:
                    return True
                self.muted.remove(m)   # something changed there: a ticket, perhaps
                return False
        return False
