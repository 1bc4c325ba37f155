"""Flattening a matrix code on curved paper.

A ticket bent round a hand or a bottle is a cylinder seen from the front: a
point at arc length s from the bend's middle appears at R*sin(s/R). A plain
perspective grid cannot follow that, so zxing-cpp finds the symbol (its finder
patterns still look like finders) but samples the wrong modules. Given the
quad it found, `unwarp` resamples the region as the flat paper would look,
for one hypothesis of bend axis (along the quad's first or second side) and
arc (radians the symbol spans); the decoder tries a few, one per frame.
"""

from __future__ import annotations

import math

import numpy as np

# (axis, arc) hypotheses tried after the estimate, in the order they are worth trying.
HYPOTHESES = ((0, 2.2), (1, 2.2), (0, 2.8), (1, 2.8))


def _sides(quad):
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad
    top = ((x1 - x0 + x2 - x3) / 2, (y1 - y0 + y2 - y3) / 2)     # mean of the two horizontal sides
    side = ((x3 - x0 + x2 - x1) / 2, (y3 - y0 + y2 - y1) / 2)    # mean of the two vertical sides
    return top, side


def estimate(quad, scale: float = 1.0):
    """(axis, arc) from the quad's shape: a square symbol bent across one
    axis looks narrower along it by 2*sin(arc/2)/arc. None if it looks flat."""
    top, side = (math.hypot(*v) for v in _sides(quad))
    if min(top, side) < 8:
        return None
    axis, ratio = (0, top / side) if top < side else (1, side / top)
    if ratio > 0.95:
        return None
    arc = 0.5
    while arc < 3.1 and 2 * math.sin(arc / 2) / arc > ratio:
        arc += 0.05
    return axis, min(3.1, arc * scale)


MAX_SIDE = 240   # output pixels per side: bounds the cost (about a millisecond)


def unwarp(img: np.ndarray, quad, axis: int, arc: float) -> np.ndarray:
    """img resampled as if the paper under `quad` (four (x, y) corners in img
    coordinates: top-left, top-right, bottom-right, bottom-left) were flat."""
    cx, cy = sum(x for x, _ in quad) / 4, sum(y for _, y in quad) / 4
    top, side = _sides(quad)
    along = top if axis == 0 else side
    width = math.hypot(*along)                 # the symbol's projected extent across the bend
    if width < 8:
        return img
    ca, sa = along[0] / width, along[1] / width
    radius = width / (2 * math.sin(arc / 2))
    h, w = img.shape
    out_w = int(w * arc / (2 * math.sin(arc / 2)) * 1.05) + 1   # the flattened paper is wider
    out_h = int(h * 1.05) + 1
    side_px = max(out_w, out_h)
    step = max(1.0, side_px / MAX_SIDE)       # big modules survive a coarser grid
    n = int(side_px / step)
    grid = (np.arange(n, dtype=np.float32) - n / 2) * step
    ys, xs = grid[:, None], grid[None, :]
    a = xs * ca + ys * sa                      # flat coordinate across the bend
    b = -xs * sa + ys * ca                     # along the bend axis: unchanged
    ap = radius * np.sin(np.clip(a / radius, -math.pi / 2, math.pi / 2))
    sx = cx + ap * ca - b * sa
    sy = cy + ap * sa + b * ca
    xi = np.clip((sx + 0.5).astype(np.int32), 0, w - 1)
    yi = np.clip((sy + 0.5).astype(np.int32), 0, h - 1)
    out = img[yi, xi]
    outside = (sx < 0) | (sx >= w) | (sy < 0) | (sy >= h)
    out[outside] = int(np.median(img[::4, ::4]))
    return out
