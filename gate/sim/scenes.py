"""Hard camera scenes: tickets as a door camera meets them on a bad night.

A second rendering path beside gate.sim.render: Code128 comes from the small
encoder here (not zxing-cpp's writer), and every scene is a geometric warp
computed per pixel: paper curved round a hand or creased or crumpled, a phone
screen with its pixel grid (moiré) and a glare spot, motion blur, a dim room,
and 1-D codes at 1.5-2.5 pixels per module slanted by up to 30 degrees.

Each output pixel is the mean of SS x SS samples taken through the inverse
warp, so thin bars integrate the way a sensor pixel does. A `Presentation`
is one ticket held up: its frames differ by hand tremor and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Code128 symbol patterns 0..105 (bar, space, bar, ... widths in modules) and the stop.
_PATTERNS = """212222 222122 222221 121223 121322 131222 122213 122312 132212 221213
221312 231212 112232 122132 122231 113222 123122 123221 223211 221132 221231 213212 223112 312131
311222 321122 321221 312212 322112 322211 212123 212321 232121 111323 131123 131321 112313 132113
132311 211313 231113 231311 112133 112331 132131 113123 113321 133121 313121 211331 231131 213113
213311 213131 311123 311321 331121 312113 312311 332111 314111 221411 431111 111224 111422 121124
121421 141122 141221 112214 112412 122114 122411 142112 142211 241211 221114 413111 241112 134111
111242 121142 121241 114212 124112 124211 411212 421112 421211 212141 214121 412121 111143 111341
131141 114113 114311 411113 411311 113141 114131 311141 411131 211412 211214 211232""".split()
_STOP = "2331112"
START_B, START_C, CODE_B, CODE_C = 104, 105, 100, 99


def code128_values(text: str) -> list[int]:
    """Symbol values (start .. data .. check) for printable ASCII: Code C for
    runs of four or more digits, Code B elsewhere."""
    if any(not 32 <= ord(ch) < 127 for ch in text):
        raise ValueError("Code128 here encodes printable ASCII only")
    vals: list[int] = []
    i, mode = 0, None
    while i < len(text):
        run = len(text[i:]) - len(text[i:].lstrip("0123456789"))
        if run >= 4:
            run -= run % 2
            if mode != "C":
                vals.append(START_C if mode is None else CODE_C)
                mode = "C"
            vals += [int(text[j:j + 2]) for j in range(i, i + run, 2)]
            i += run
        else:
            if mode != "B":
                vals.append(START_B if mode is None else CODE_B)
                mode = "B"
            vals.append(ord(text[i]) - 32)
            i += 1
    check = (vals[0] + sum(k * v for k, v in enumerate(vals[1:], 1))) % 103
    return vals + [check]


def code128_modules(text: str, quiet: int = 10) -> np.ndarray:
    """One row of modules (True = bar) with quiet zones."""
    widths = "".join(_PATTERNS[v] for v in code128_values(text)) + _STOP
    row = [False] * quiet
    for k, w in enumerate(widths):
        row += [k % 2 == 0] * int(w)
    return np.array(row + [False] * quiet, dtype=bool)


def qr_modules(text: str) -> np.ndarray:
    import segno
    return np.pad(np.array(segno.make_qr(text, error="m").matrix, dtype=bool), 4)


# ----------------------------------------------------------------- warps
# A warp maps image points (x, y) to paper points (u, v) in modules, plus a
# shading factor; composed from a placement (rotation, scale, perspective) and
# a paper shape.

@dataclass
class Placement:
    cx: float
    cy: float
    module_px: float
    angle: float = 0.0        # radians
    tilt: float = 0.0         # perspective: relative scale change across the symbol
    w: float = 0.0            # symbol size in modules
    h: float = 0.0

    def to_paper(self, x, y):
        """Image -> flat paper coordinates in modules, centred on the symbol."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        a = (c * dx + s * dy) / self.module_px
        b = (-s * dx + c * dy) / self.module_px
        if self.tilt:
            k = 1.0 + self.tilt * a / max(self.w, 1.0)
            a, b = a / k, b / k
        return a + self.w / 2, b + self.h / 2


def curve(u, v, w, h, radius, along_u=True):
    """Paper wrapped round a cylinder (bending along u when along_u): a
    projected coordinate p from the symbol's middle maps back to arc length
    R*asin(p/R), and the surface darkens as it turns away."""
    p = (u - w / 2) if along_u else (v - h / 2)
    q = np.clip(p / radius, -0.999, 0.999)
    arc = radius * np.arcsin(q)
    shade = 0.55 + 0.45 * np.sqrt(1 - q * q)
    if along_u:
        return arc + w / 2, v, shade
    return u, arc + h / 2, shade


def crease(u, v, at, fold_cos, light):
    """Folded along u = at: the far half is foreshortened and lit differently."""
    far = u > at
    u2 = np.where(far, at + (u - at) / fold_cos, u)
    shade = np.where(far, light, 1.0) * (1 - 0.35 * np.exp(-((u - at) ** 2) / 0.3))
    return u2, v, shade


def crumple(u, v, rng, amp):
    """A smooth random displacement field, shaded by its slope."""
    du = np.zeros_like(u)
    dv = np.zeros_like(v)
    shade = np.ones_like(u)
    for _ in range(4):
        fu, fv, ph = rng.uniform(0.05, 0.16), rng.uniform(0.05, 0.16), rng.uniform(0, 2 * math.pi)
        wave = np.sin(fu * u + fv * v + ph)
        du += amp * rng.uniform(-1, 1) * wave
        dv += amp * rng.uniform(-1, 1) * wave
        shade += 0.08 * np.cos(fu * u + fv * v + ph)
    return u + du, v + dv, shade


# ----------------------------------------------------------------- scenes

KINDS = ("curved_qr", "creased_qr", "crumpled_qr", "phone_glare_qr", "motion_qr", "lowlight_qr",
         "c128_slant", "c128_curved", "c128_lowlight")
SS = 3  # samples per pixel side


def background(size, rng) -> np.ndarray:
    """A doorway: gradient, clutter blocks, a few stripes (sleeves, railings)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = 80 + 60 * (xx / w) + 25 * np.sin(yy / (20 + 30 * rng.random()))
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        bg[y0:y0 + int(rng.integers(10, 140)), x0:x0 + int(rng.integers(10, 180))] += rng.integers(-60, 60)
    x0, y0 = int(rng.integers(0, w - 120)), int(rng.integers(0, h - 60))
    bg[y0:y0 + 50, x0:x0 + 100] += 40 * np.sign(np.sin(xx[y0:y0 + 50, x0:x0 + 100] / 3.0))
    return bg


def _motion(img, length, angle):
    """Linear motion blur: the mean of shifted copies along the motion."""
    out = np.zeros_like(img)
    n = max(1, int(round(length)))
    for k in range(n):
        t = k - (n - 1) / 2
        dx, dy = int(round(t * math.cos(angle))), int(round(t * math.sin(angle)))
        out += np.roll(np.roll(img, dy, axis=0), dx, axis=1)
    return out / n


def _blur(img, sigma):
    """Separable Gaussian blur (optics), numpy only."""
    if sigma <= 0:
        return img
    r = max(1, int(3 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
    k /= k.sum()
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        src = np.pad(img, pad, mode="edge")
        n = img.shape[axis]
        img = sum(wt * src.take(range(j, j + n), axis=axis) for j, wt in enumerate(k))
    return img


@dataclass
class Presentation:
    """One ticket held up to the camera: `frame(i)` renders its i-th frame."""
    kind: str
    text: str
    modules: np.ndarray       # 2-D bool, True = dark
    place: Placement
    params: dict
    size: tuple
    seed: int

    def _paper(self, X, Y, jit):
        """Image points -> paper (u, v) in modules and a shading factor."""
        p, pl = self.params, self.place
        u, v = jit.to_paper(X, Y)
        shade = np.ones_like(u)
        if "radius" in p:
            u, v, shade = curve(u, v, pl.w, pl.h, p["radius"], p["along_u"])
        if "fold_at" in p:
            u, v, shade = crease(u, v, p["fold_at"], p["fold_cos"], p["fold_light"])
        if "crumple" in p:
            u, v, s2 = crumple(u, v, np.random.default_rng(self.seed + 1), p["crumple"])
            shade = shade * s2
        return u, v, shade

    def _paint(self, img, jit, block=8):
        """Paint the ticket into img, sampling only blocks that touch it."""
        p = self.params
        h, w = img.shape
        mh, mw = self.modules.shape
        by, bx = np.mgrid[0:h // block, 0:w // block]
        u, v, _ = self._paper((bx + 0.5) * block, (by + 0.5) * block, jit)
        slack = 1.5 * block / self.place.module_px + 3
        hit = (u > -slack) & (u < mw + slack) & (v > -slack) & (v < mh + slack)
        oy, ox = np.nonzero(hit)
        if oy.size == 0:
            return img
        offs = np.arange(block * SS, dtype=np.float32) / SS + 0.5 / SS - 0.5
        X = ox[:, None, None] * block + offs[None, None, :]
        Y = oy[:, None, None] * block + offs[None, :, None]
        X, Y = np.broadcast_arrays(X, Y)
        u, v, shade = self._paper(X, Y, jit)
        margin = p.get("margin", 2)
        on = (u >= -margin) & (u < mw + margin) & (v >= -margin) & (v < mh + margin)
        inside = (u >= 0) & (u < mw) & (v >= 0) & (v < mh)
        iu = np.clip(np.floor(u).astype(np.int64), 0, mw - 1)
        iv = np.clip(np.floor(v).astype(np.int64), 0, mh - 1)
        dark = self.modules[iv, iu] & inside
        val = np.where(dark, p.get("ink", 25.0), p.get("paper", 235.0)) * shade
        if "screen_pitch" in p:
            # The phone's pixel grid: a fine lattice the sensor aliases into moiré.
            sp = p["screen_pitch"]
            val = val * (1 - 0.35 * (np.sin(2 * math.pi * X / sp) ** 2) * (np.sin(2 * math.pi * Y / sp * 1.07) ** 2))
        n = oy.size
        val = val.reshape(n, block, SS, block, SS).mean(axis=(2, 4))
        onm = on.reshape(n, block, SS, block, SS).mean(axis=(2, 4))
        ry = oy[:, None, None] * block + np.arange(block)[None, :, None]
        rx = ox[:, None, None] * block + np.arange(block)[None, None, :]
        img[ry, rx] = img[ry, rx] * (1 - onm) + val * onm
        return img

    def frame(self, i: int = 0) -> np.ndarray:
        rng = np.random.default_rng((self.seed, i))
        p = self.params
        w, h = self.size
        img = background(self.size, np.random.default_rng(self.seed)).astype(np.float32)
        pl = self.place
        # Hand tremor: a sub-pixel drift and a hint of rotation from frame to frame.
        jit = Placement(pl.cx + rng.normal(0, 0.7), pl.cy + rng.normal(0, 0.7), pl.module_px,
                        pl.angle + rng.normal(0, 0.004), pl.tilt, pl.w, pl.h)
        img = self._paint(img, jit)
        if "glare" in p:
            gx, gy, gr, ga = p["glare"]
            yy, xx = np.mgrid[0:h, 0:w]
            img += ga * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * gr * gr))
        if "motion" in p:
            img = _motion(img, *p["motion"])
        img = _blur(img, p.get("blur", 0.0))
        if "dim" in p:
            img = img * p["dim"]
            img = rng.poisson(np.clip(img, 0, None) / 2.0) * 2.0  # shot noise at low light
        img += rng.normal(0, p.get("noise", 2.0), size=img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)


def present(kind: str, text: str, rng, size=(640, 480)) -> Presentation:
    """A random presentation of `text` as scene `kind` (see KINDS)."""
    w, h = size
    p: dict = {}
    if kind.startswith("c128"):
        row = code128_modules(text)
        bar_h = 30
        modules = np.repeat(row[None, :], bar_h, axis=0)
        mpx = rng.uniform(1.5, 2.5)
        angle = math.radians(rng.uniform(-30, 30))
        p.update(blur=rng.uniform(0.4, 0.8), noise=rng.uniform(3, 6))
        if kind == "c128_curved":
            mpx = rng.uniform(1.8, 2.6)
            angle = math.radians(rng.uniform(-25, 25))
            # bent round a hand: the symbol spans 60-100 degrees of arc
            p.update(radius=row.size / math.radians(rng.uniform(60, 100)), along_u=True)
        if kind == "c128_lowlight":
            mpx = rng.uniform(2.0, 3.0)
            angle = math.radians(rng.uniform(-20, 20))
            p.update(dim=rng.uniform(0.18, 0.3), noise=rng.uniform(3, 5))
    else:
        modules = qr_modules(text)
        mpx = rng.uniform(3.2, 4.5)
        angle = math.radians(rng.uniform(-25, 25))
        n = modules.shape[0]
        if kind == "curved_qr":
            along = bool(rng.integers(0, 2))
            p.update(radius=n / math.radians(rng.uniform(120, 175)), along_u=along)
            mpx = rng.uniform(4.0, 5.0)
        elif kind == "creased_qr":
            p.update(fold_at=n * rng.uniform(0.35, 0.65), fold_cos=rng.uniform(0.55, 0.8),
                     fold_light=rng.uniform(0.6, 0.8))
        elif kind == "crumpled_qr":
            p.update(crumple=rng.uniform(0.35, 0.6))
            mpx = rng.uniform(3.8, 5.0)
        elif kind == "phone_glare_qr":
            p.update(screen_pitch=rng.uniform(1.6, 2.6), paper=250.0, ink=40.0)
        elif kind == "motion_qr":
            p.update(motion=(rng.uniform(5, 9), rng.uniform(0, math.pi)))
            mpx = rng.uniform(4.0, 5.0)
        elif kind == "lowlight_qr":
            p.update(dim=rng.uniform(0.15, 0.25), noise=3.0)
    mh, mw = modules.shape
    # The whole symbol in view: a patron aims the ticket at the camera.
    c, sn = abs(math.cos(angle)), abs(math.sin(angle))
    mpx = min(mpx, (w - 16) / (mw * c + mh * sn), (h - 16) / (mw * sn + mh * c))
    hx = 0.5 * (mw * c + mh * sn) * mpx + 6
    hy = 0.5 * (mw * sn + mh * c) * mpx + 6
    cx = rng.uniform(hx, w - hx) if w > 2 * hx else w / 2
    cy = rng.uniform(hy, h - hy) if h > 2 * hy else h / 2
    place = Placement(cx, cy, mpx, angle, rng.uniform(-0.15, 0.15), mw, mh)
    if kind == "phone_glare_qr":
        r = mw * mpx * rng.uniform(0.12, 0.2)
        p["glare"] = (cx + rng.uniform(-0.25, 0.25) * mw * mpx, cy + rng.uniform(-0.25, 0.25) * mh * mpx,
                      r, rng.uniform(170, 260))
    return Presentation(kind, text, modules, place, p, size, int(rng.integers(1 << 30)))
