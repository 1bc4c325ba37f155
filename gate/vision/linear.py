"""1-D codes the row scanner cannot read: finding bar regions and reading them
by integrating along the bars.

A Code128 at 2 pixels per module, slanted and a little blurred, has no single
row clean enough for a width decoder: noise and the pixel grid each move edges
by a good part of a module. But a bar is long. Averaging many pixels along
the estimated bar direction, binned at a quarter pixel across the bars, turns
the symbol into one clean, sub-pixel 1-D profile; a slant helps here, since
each row samples the bars at a different phase. The profile, stretched into a
small image, goes back to zxing-cpp's width decoder.

`find_bars` is cheap enough for every frame (a few strided rows, block sums);
`read_bars` costs about a millisecond and runs only on what it flags.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

BLOCK = 16          # columns per block in the bar detector
ROW_STEP = 10       # rows sampled by the bar detector
MIN_RUN = 4         # blocks: about 64 px of bars before a region counts
MIN_EDGES = 2       # rising edges per block: bars and spaces of ~4 px or less
BIN = 4             # profile bins per pixel
MAX_PIXELS = 40_000


def grey_range(y: np.ndarray) -> float:
    """Grey levels between the darkest and brightest 2 % of a sparse sample."""
    sample = y[::16, ::16].ravel()
    k = sample.size // 50
    lo, hi = np.partition(sample, [k, sample.size - 1 - k])[[k, sample.size - 1 - k]]
    return float(hi) - float(lo)


def find_bars(y: np.ndarray, max_regions: int = 3, contrast: float = 0.0) -> list[tuple[int, int, int, int]]:
    """Regions (x0, y0, x1, y1) that look like fine bars: many edges along the
    rows, little change from one row to the next. Strongest first.

    Only fine bars count (MIN_EDGES per block, about 3 pixels per module or
    less): coarser codes are read by the row scanner anyway, and the rule
    keeps railings and stripes out. `contrast` is the frame's grey range,
    estimated here when not given, so a dim frame's bars still count.
    """
    h, w = y.shape
    wb = (w - 1) // BLOCK
    if h < 2 * ROW_STEP or wb < MIN_RUN:
        return []
    contrast = contrast or grey_range(y)
    step = max(3.0, contrast / 16)
    rows = y[ROW_STEP // 2:h - 1:ROW_STEP, :wb * BLOCK + 1].astype(np.int16)
    below = y[ROW_STEP // 2 + 1:h:ROW_STEP, :wb * BLOCK + 1].astype(np.int16)[:rows.shape[0]]
    d = np.diff(rows, axis=1)
    across = np.abs(d).reshape(rows.shape[0], wb, BLOCK).sum(axis=2)
    along = np.abs(rows[:, 1:] - below[:, 1:]).reshape(rows.shape[0], wb, BLOCK).sum(axis=2)
    rising = d > step
    edges = (rising[:, 1:] & ~rising[:, :-1])
    edges = np.pad(edges, ((0, 0), (1, 0))).reshape(rows.shape[0], wb, BLOCK).sum(axis=2)
    # Bars up to ~35 degrees off vertical change a row much more than they
    # change from one row to the next; texture and noise change both alike.
    hit = (edges >= MIN_EDGES) & (across > step * BLOCK) & (along * 4 < across * 3)
    groups: list[list[int]] = []   # [r0, r1, c0, c1, score]
    for r in np.flatnonzero(hit.sum(axis=1) >= MIN_RUN):
        cols = np.flatnonzero(hit[r])
        # runs of adjacent columns, one gap allowed (a wide bar or space)
        breaks = np.flatnonzero(np.diff(cols) > 2)
        for seg in np.split(cols, breaks + 1):
            if seg.size < MIN_RUN:
                continue
            c0, c1, score = int(seg[0]), int(seg[-1]), int(across[r, seg].sum())
            for g in groups:
                if g[1] >= r - 2 and g[2] <= c1 + 1 and c0 <= g[3] + 1:
                    g[1], g[2], g[3], g[4] = int(r), min(g[2], c0), max(g[3], c1), g[4] + score
                    break
            else:
                groups.append([int(r), int(r), c0, c1, score])
        if len(groups) > 16:
            break
    groups.sort(key=lambda g: -g[4])
    out = []
    for r0, r1, c0, c1, _ in groups[:max_regions]:
        x0, x1 = c0 * BLOCK, (c1 + 1) * BLOCK + 1
        y0, y1 = r0 * ROW_STEP, (r1 + 1) * ROW_STEP + ROW_STEP // 2
        out.append((x0, y0, x1, y1))
    return out


def bar_angle(img: np.ndarray, sep: int = 3, reach: int = 3) -> float:
    """The direction across the bars (radians from the x axis), from how far
    the edges move between rows `sep` apart. Gradient orientation from pixel
    differences is biased towards the axes at two pixels per module; the shift
    between rows is not."""
    a = np.diff(img.astype(np.float32), axis=1)
    top, bot = a[:-sep:2, reach:-reach], a[sep::2, :]   # every other row pair is plenty
    w = top.shape[1]
    if w < 8 or top.shape[0] < 1:
        return 0.0
    scores = np.array([float((top * bot[:, reach + k:reach + k + w]).sum()) for k in range(-reach, reach + 1)])
    k = int(np.argmax(scores))
    shift = float(k - reach)
    if 0 < k < len(scores) - 1:  # parabolic peak: sub-pixel shift
        l, m, r = scores[k - 1], scores[k], scores[k + 1]
        den = l - 2 * m + r
        if den < 0:
            shift += 0.5 * (l - r) / den
    return math.atan2(-shift, sep)


class Projector:
    """The pixels of a region that lie on its bars, ready to be projected
    across the bars at any angle near the estimate."""

    def __init__(self, img: np.ndarray, angle: float):
        h, w = img.shape
        c, s = math.cos(angle), math.sin(angle)
        # Find the band along the bars where the edges are, from every fourth
        # row: above and below the symbol lie paper and background, which
        # would only dilute the profile.
        probe = img[::4].astype(np.int16)
        g = np.abs(np.diff(probe, axis=1)).astype(np.float32)
        yq = np.arange(0, h, 4, dtype=np.float32)[:, None]
        xq = np.arange(w - 1, dtype=np.float32)[None, :]
        u = yq * c - xq * s                        # position along the bars
        lo = float(u.min())
        ui = ((u - lo) * 0.5).astype(np.int32)    # 2-pixel bins
        dens = np.bincount(ui.ravel(), g.ravel()) / np.maximum(np.bincount(ui.ravel()), 1)
        band = np.flatnonzero(dens > 0.5 * np.percentile(dens, 90))
        self.ok = band.size >= 3
        if not self.ok:
            return
        u0, u1 = lo + 2.0 * band[0], lo + 2.0 * (band[-1] + 1)
        inside = float(((u >= u0) & (u < u1)).mean())
        # Every row (skipping some when the band is large; never columns,
        # which carry the sub-pixel detail), pixels inside the band only.
        step = max(1, int(inside * h * w / MAX_PIXELS + 0.5))
        ys = np.arange(0, h, step)
        xs = np.arange(w, dtype=np.float32)
        uu = ys[:, None].astype(np.float32) * c - xs[None, :] * s
        keep = (uu >= u0) & (uu < u1)
        yb, xb = np.nonzero(keep)
        self.v = img[ys[yb], xb].astype(np.float32)
        self.x, self.y = xb.astype(np.float32), (ys[yb]).astype(np.float32)
        self.ok = self.v.size > 3 * w

    def profile(self, angle: float) -> Optional[np.ndarray]:
        """Mean intensity across the bars, BIN samples per pixel."""
        t = self.x * math.cos(angle) + self.y * math.sin(angle)
        ti = ((t - t.min()) * BIN).astype(np.int32)
        n = int(ti.max()) + 1
        sums = np.bincount(ti, self.v, minlength=n)
        cnt = np.bincount(ti, minlength=n)
        good = cnt > 0
        if good.sum() < 0.2 * n:  # upright bars fill one bin in BIN
            return None
        idx = np.arange(n)
        return np.interp(idx, idx[good], sums[good] / cnt[good])


def profile_image(p: np.ndarray, rows: int = 6) -> np.ndarray:
    """A clean image for a row decoder: the profile, contrast stretched,
    repeated over a few rows."""
    p = p[:p.size // 2 * 2].reshape(-1, 2).mean(axis=1)  # two samples per pixel read best
    lo, hi = np.percentile(p, 2), np.percentile(p, 98)
    q = np.clip((p - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(q, (rows, q.size)))


def read_bars(zx, y: np.ndarray, box, formats, pad=(32, 12), angles=(0.0, 0.012, -0.012)) -> list:
    """zxing-cpp results for the bars in `box` of y, read from their profile
    at the estimated angle, then at the given offsets from it (radians)."""
    h, w = y.shape
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    xa, xb = max(0, x0 - pad[0]), min(w, x1 + pad[0])
    crop = y[max(0, y0 - pad[1]):min(h, y1 + pad[1]), xa:xb]
    if crop.shape[0] < 8 or crop.shape[1] < 32:
        return []
    angle = bar_angle(crop)
    # The detector's rows may have missed the ends of a slanted code, which
    # lie above and below its box: reach as far as the slant says they can.
    reach = pad[1] + int(abs(math.tan(angle)) * (xb - xa) * 0.5)
    crop = y[max(0, y0 - reach):min(h, y1 + reach), xa:xb]
    proj = Projector(crop, angle)
    if not proj.ok:
        return []
    for da in angles:
        p = proj.profile(angle + da)
        if p is None:
            continue
        res = [r for r in zx.read_barcodes(profile_image(p), formats=formats, try_rotate=True,
                                           try_downscale=True, try_invert=False) if r.valid]
        if res:
            return res
    return []
