"""The decode engines behind gate.decode: zxing-cpp (the default) and pyzbar.

An engine offers the passes the staged pipeline needs: `live` (every frame,
cheap), `periodic` (every few frames, full resolution), `thorough` (a still
image's last chance), and `recover` (one bounded attempt on a region where
something was seen but not read). Passes return codes and the regions of
symbols found but not decoded, as boxes in the frame's pixel coordinates.

zxing-cpp accepts strided views without a copy, releases the GIL and keeps
binary payloads exact. pyzbar needs a contiguous copy of the plane, re-encodes
binary QR data and reports nothing it could not read.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

import numpy as np

from gate.core.events import Code
from gate.core.symbologies import SYMBOLOGIES
from gate.vision import dewarp, linear

FORMAT_NAMES = {v[0]: k for k, v in SYMBOLOGIES.items()}
MATRIX = ("qr", "microqr", "datamatrix", "aztec", "pdf417")
LINEAR_ROW_STEP = 6  # a 1-D code needs horizontal detail, hardly any vertical
# Offsets (radians) from the estimated bar angle tried on successive attempts.
DIM_CONTRAST = 100    # grey levels between a frame's darkest and brightest 2 %
# The quad's shape tells a bend's size better than its axis (perspective
# shortens sides too), so both axes are tried early.
MATRIX_STEPS = ("stretch", "flatten", "bend", "bend across", "thorough", "bend more", dewarp.HYPOTHESES[0],
                dewarp.HYPOTHESES[1])
BENT_STEPS = ("bend", "bend across", "flatten", "bend more", "stretch", "thorough", dewarp.HYPOTHESES[0],
              dewarp.HYPOTHESES[1])
BAR_ANGLES = ((0.0,), (0.012, -0.012), (0.024, -0.024))


class Seen(NamedTuple):
    """Where a symbol was found but not read, in the frame's pixels: its
    bounding box and, when the engine reports one, its corner quad."""
    x0: float
    y0: float
    x1: float
    y1: float
    quad: Optional[tuple] = None
    fine: bool = True        # found at full resolution (a half-resolution quad is coarser)


def code_from_bytes(fmt: str, raw: bytes, fallback: str = "") -> Code:
    """A Code whose text is the UTF-8 reading of raw; otherwise the engine's
    charset-aware text (QR's default is ISO-8859-1), else escaped bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = fallback or raw.decode("utf-8", errors="backslashreplace")
    return Code(format=fmt, raw=raw, text=text)


def _zx_code(r) -> Code:
    return code_from_bytes(FORMAT_NAMES.get(r.format.name, r.format.name), bytes(r.bytes), r.text)


def stretch(img: np.ndarray) -> np.ndarray:
    """Contrast stretched copy: a dim or washed-out region spread over 0..255,
    so binarizers with a minimum local contrast see its modules."""
    sample = img[::4, ::4].ravel()
    k = sample.size // 33
    lo, hi = (float(v) for v in np.partition(sample, [k, sample.size - 1 - k])[[k, sample.size - 1 - k]])
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / max(hi - lo, 8.0)), 0, 255)
    return lut.astype(np.uint8)[img]  # a table lookup: far cheaper than arithmetic per pixel


def flatten(img: np.ndarray, r: int = 8) -> np.ndarray:
    """The region minus its local mean (a (2r+1)^2 box, from an integral
    image), stretched: a glare spot or a shadow across the symbol is a smooth
    offset, the modules are not."""
    a = img.astype(np.float32)
    k = 2 * r + 1
    c = np.pad(a, ((r + 1, r), (r + 1, r)), mode="edge").cumsum(axis=0).cumsum(axis=1)
    local = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    d = a - local
    lo, hi = np.percentile(d[::2, ::2], (2, 98))
    return np.clip((d - lo) * (255.0 / max(float(hi - lo), 1.0)), 0, 255).astype(np.uint8)


class ZxingEngine:
    """zxing-cpp over strided views: matrix codes on the half-resolution plane,
    linear codes on every LINEAR_ROW_STEP-th row at full horizontal detail."""

    name = "zxing"

    def __init__(self, symbologies: Iterable[str]):
        import zxingcpp
        self.zx = zxingcpp
        syms = list(symbologies)
        fmt = lambda names: tuple(getattr(zxingcpp.BarcodeFormat, SYMBOLOGIES[s][0]) for s in names)
        self.formats = fmt(syms)
        self.matrix = fmt([s for s in syms if s in MATRIX])
        self.linear = fmt([s for s in syms if s not in MATRIX])
        # zxing-cpp 3's QRCode also matches Micro QR and rMQR: keep what was asked for.
        self.allowed = {SYMBOLOGIES[s][0] for s in syms}
        self.fast = dict(try_rotate=False, try_downscale=False, try_invert=False, return_errors=True)

    def _read(self, img, formats, sx, sy, transposed=False):
        good: list[Code] = []
        failed: list[Seen] = []
        if not formats:
            return good, failed
        for r in self.zx.read_barcodes(img, formats=formats, **self.fast):
            if r.valid:
                if r.format.name in self.allowed:
                    good.append(_zx_code(r))
            else:
                failed.append(_seen(r.position, sx, sy, transposed))
        return good, failed

    def live(self, y: np.ndarray):
        """The every-frame pass: returns (codes, boxes of failed detections)."""
        good, failed = self._read(y[::2, ::2], self.matrix, 2, 2)
        if not good:
            g2, f2 = self._read(y[::LINEAR_ROW_STEP, :], self.linear, 1, LINEAR_ROW_STEP)
            good, failed = g2, failed + f2
        return good, failed

    def periodic(self, y: np.ndarray, contrast: float = 255.0):
        """The every-Nth-frame pass: small matrix codes, sideways linear codes;
        in a dim or flat frame, matrix codes once more after a stretch."""
        good, failed = self._read(y, self.matrix, 1, 1)
        if not good and contrast < DIM_CONTRAST:
            good, more = self._read(stretch(y), self.matrix, 1, 1)
            failed += more
        if not good:
            g2, f2 = self._read(y[:, ::LINEAR_ROW_STEP].T, self.linear, LINEAR_ROW_STEP, 1, True)
            good, failed = g2, failed + f2
        return good, failed

    def find_bars(self, y: np.ndarray, contrast: float = 0.0):
        return linear.find_bars(y, contrast=contrast) if self.linear else []

    def recover(self, img: np.ndarray, kind: str, attempt: int, quad=None, box=None,
                still: bool = False) -> list[Code]:
        """One attempt on a region; successive attempts try other means. For
        "matrix" img is the cropped region and `quad` the symbol's corners in
        it, when known; for "bars" img is the frame and `box` the region.
        A still image (no frame budget) also gets the 2x upscale."""
        if kind == "bars":   # img is the whole frame here, box the region in it
            res = linear.read_bars(self.zx, img, box, self.linear, angles=BAR_ANGLES[attempt % len(BAR_ANGLES)])
            return self._codes(res)
        # Cheap general remedies and bend hypotheses take turns, so a held
        # ticket meets each kind of trouble within a few frames; a quad that
        # looks bent (narrower one way) gets the bends first.
        est = dewarp.estimate(quad) if quad is not None else None
        order = BENT_STEPS if est is not None and est[1] > 1.5 else MATRIX_STEPS
        step = order[attempt % len(order)]
        if step == "stretch":   # dim or low-contrast: stretch the region's own range
            return self._thorough_once(stretch(img), self.zx.Binarizer.LocalAverage)
        if step == "flatten":   # glare or shadow across the symbol: take the local mean away
            return self._thorough_once(flatten(img), self.zx.Binarizer.LocalAverage)
        if step == "thorough" or quad is None:
            if still:
                return self.thorough(img, upscale=True)
            return self._thorough_once(img, self.zx.Binarizer.GlobalHistogram)   # one call: the frame's budget
        # Curved paper: flatten one bend, first the one the quad's shape suggests.
        bend = step
        if isinstance(step, str):
            bend = dewarp.estimate(quad, 1.25 if step == "bend more" else 1.0) or dewarp.HYPOTHESES[0]
            if step == "bend across":
                bend = (1 - bend[0], bend[1])
        flat = dewarp.unwarp(img, quad, *bend)
        # ignored: zxing-cpp's stub wants BarcodeFormats, but a tuple of BarcodeFormat converts to it.
        res = self.zx.read_barcodes(flat, formats=self.matrix,  # type: ignore[arg-type]
                                    try_rotate=True, try_downscale=False, try_invert=False)
        return self._codes(res)

    def _codes(self, results) -> list[Code]:
        return [_zx_code(r) for r in results if r.valid and r.format.name in self.allowed]

    def _thorough_once(self, img, binarizer):
        res = self.zx.read_barcodes(img, formats=self.formats, try_rotate=True, try_downscale=True,
                                    try_invert=True, binarizer=binarizer)
        return self._codes(res)

    def thorough(self, img: np.ndarray, upscale: bool = True) -> list[Code]:
        """Everything zxing-cpp can try: rotation, inversion, pyramid, binarizers."""
        B = self.zx.Binarizer
        for binarizer in (B.LocalAverage, B.GlobalHistogram):
            good = self._thorough_once(img, binarizer)
            if good:
                return good
        if upscale and img.shape[0] * img.shape[1] <= 1_000_000:
            # Very small modules: a 2x upscale gives the binarizer room to work.
            big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
            # ignored: zxing-cpp's stub wants BarcodeFormats, but a tuple of BarcodeFormat converts to it.
            res = self.zx.read_barcodes(big, formats=self.formats,  # type: ignore[arg-type]
                                        try_rotate=True, try_invert=True)
            return self._codes(res)
        return []


def _seen(p, sx, sy, transposed) -> Seen:
    pts = [(p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y),
           (p.bottom_right.x, p.bottom_right.y), (p.bottom_left.x, p.bottom_left.y)]
    if transposed:
        pts = [(v, u) for u, v in pts]
    pts = [(u * sx, v * sy) for u, v in pts]
    us, vs = [u for u, _ in pts], [v for _, v in pts]
    return Seen(min(us), min(vs), max(us) + sx, max(vs) + sy, tuple(pts), sx == 1 and sy == 1)


class ZbarEngine:
    name = "zbar"

    def __init__(self, symbologies: Iterable[str]):
        from pyzbar import pyzbar
        from pyzbar.pyzbar import ZBarSymbol
        self.pyzbar = pyzbar
        zbar_names = [SYMBOLOGIES[s][1] for s in symbologies]
        self.symbols = [getattr(ZBarSymbol, n) for n in zbar_names if n]

    def live(self, y: np.ndarray):
        return self.scan(y), []

    def periodic(self, y: np.ndarray, contrast: float = 255.0):
        return [], []

    def find_bars(self, y: np.ndarray, contrast: float = 0.0):
        return []  # zbar's own scanner already reads every row it can

    def scan(self, img: np.ndarray) -> list[Code]:
        h, w = img.shape
        # zbar needs exactly w*h contiguous bytes: one copy, unavoidable here.
        res = self.pyzbar.decode((np.ascontiguousarray(img).tobytes(), w, h), symbols=self.symbols)
        fmt = {"QRCODE": "qr", "CODE128": "code128", "CODE39": "code39", "EAN13": "ean13",
               "I25": "itf", "PDF417": "pdf417"}
        return [code_from_bytes(fmt.get(r.type, r.type.lower()), r.data) for r in res]

    def recover(self, img, kind, attempt, quad=None, box=None, still=False) -> list[Code]:
        if box is not None:
            img = img[int(box[1]):int(box[3]), int(box[0]):int(box[2])]
        return self.scan(flatten(img) if attempt % 2 else stretch(img))

    def thorough(self, img: np.ndarray, upscale: bool = True) -> list[Code]:
        return self.scan(img) or self.scan(255 - img)  # then light-on-dark codes


def make_engine(name: str, symbologies: Iterable[str]):
    return {"zxing": ZxingEngine, "zbar": ZbarEngine}[name](list(symbologies))
