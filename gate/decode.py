"""Reading barcodes from grey frames.

The live pipeline is staged so that empty frames, which are most frames, cost
one cheap pass:

1. every frame: a zero-copy half-resolution view (`y[::2, ::2]`) with the
   fast settings (no rotation, no inversion, no downscale pyramid);
2. only where pass 1 *found* a symbol it could not decode: the full-resolution
   region around it, with rotation, inversion and other binarizers;
3. every `full_every`-th frame: a full-resolution fast pass, for symbols too
   small to survive halving.

A still image (`gate decode`) gets one chance, not thirty a second, so it runs
the same stages and then a thorough full-frame pass if they found nothing.

zxing-cpp is the default engine: it accepts strided views without a copy,
releases the GIL and keeps binary payloads exact. pyzbar is supported too; it
needs a contiguous copy of the plane and re-encodes binary QR data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from gate.events import Code

# name -> (zxing-cpp format name, zbar symbol name)
SYMBOLOGIES = {
    "qr": ("QRCode", "QRCODE"),
    "microqr": ("MicroQRCode", None),
    "code128": ("Code128", "CODE128"),
    "code39": ("Code39", "CODE39"),
    "ean13": ("EAN13", "EAN13"),
    "itf": ("ITF", "I25"),
    "datamatrix": ("DataMatrix", None),
    "aztec": ("Aztec", None),
    "pdf417": ("PDF417", "PDF417"),
}
FORMAT_NAMES = {v[0]: k for k, v in SYMBOLOGIES.items()}


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


@dataclass
class DecodeStats:
    frames: int = 0
    retries: int = 0
    full_passes: int = 0


MATRIX = ("qr", "microqr", "datamatrix", "aztec", "pdf417")
LINEAR_ROW_STEP = 6  # a 1-D code needs horizontal detail, hardly any vertical


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
        self.fast = dict(try_rotate=False, try_downscale=False, try_invert=False, return_errors=True)

    def _read(self, img, formats, sx, sy, transposed=False):
        good, failed = [], []
        if not formats:
            return good, failed
        for r in self.zx.read_barcodes(img, formats=formats, **self.fast):
            if r.valid:
                good.append(_zx_code(r))
            else:
                failed.append((r, sx, sy, transposed))
        return good, failed

    def live(self, y: np.ndarray):
        """The every-frame pass: returns (codes, failed detections)."""
        good, failed = self._read(y[::2, ::2], self.matrix, 2, 2)
        if not good:
            g2, f2 = self._read(y[::LINEAR_ROW_STEP, :], self.linear, 1, LINEAR_ROW_STEP)
            good, failed = g2, failed + f2
        return good, failed

    def periodic(self, y: np.ndarray):
        """The every-Nth-frame pass: small matrix codes, sideways linear codes."""
        good, failed = self._read(y, self.matrix, 1, 1)
        if not good:
            g2, f2 = self._read(y[:, ::LINEAR_ROW_STEP].T, self.linear, LINEAR_ROW_STEP, 1, True)
            good, failed = g2, failed + f2
        return good, failed

    def retry(self, y: np.ndarray, failed) -> list[Code]:
        """Second attempt on the full-resolution region around each failed symbol."""
        h, w = y.shape
        for r, sx, sy, transposed in failed:
            p = r.position
            us = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
            vs = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
            if transposed:
                us, vs = vs, us
            x0, x1 = min(us) * sx, max(us) * sx
            y0, y1 = min(vs) * sy, max(vs) * sy
            m = max(24, (x1 - x0) // 4, (y1 - y0) // 4)
            crop = y[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)]
            if crop.size:
                codes = self.thorough(crop)
                if codes:
                    return codes
        return []

    def thorough(self, img: np.ndarray) -> list[Code]:
        """Everything zxing-cpp can try: rotation, inversion, pyramid, binarizers."""
        B = self.zx.Binarizer
        for binarizer in (B.LocalAverage, B.GlobalHistogram):
            res = self.zx.read_barcodes(img, formats=self.formats, try_rotate=True, try_downscale=True,
                                        try_invert=True, binarizer=binarizer)
            good = [_zx_code(r) for r in res if r.valid]
            if good:
                return good
        if img.shape[0] * img.shape[1] <= 1_000_000:
            # Very small modules: a 2x upscale gives the binarizer room to work.
            big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
            res = self.zx.read_barcodes(big, formats=self.formats, try_rotate=True, try_invert=True)
            return [_zx_code(r) for r in res if r.valid]
        return []


class ZbarEngine:
    name = "zbar"

    def __init__(self, symbologies: Iterable[str]):
        from pyzbar import pyzbar
        from pyzbar.pyzbar import ZBarSymbol
        self.pyzbar = pyzbar
        self.symbols = [getattr(ZBarSymbol, SYMBOLOGIES[s][1]) for s in symbologies if SYMBOLOGIES[s][1]]

    def live(self, y: np.ndarray):
        return self.scan(y), []

    def periodic(self, y: np.ndarray):
        return [], []

    def scan(self, img: np.ndarray) -> list[Code]:
        h, w = img.shape
        # zbar needs exactly w*h contiguous bytes: one copy, unavoidable here.
        res = self.pyzbar.decode((np.ascontiguousarray(img).tobytes(), w, h), symbols=self.symbols)
        fmt = {"QRCODE": "qr", "CODE128": "code128", "CODE39": "code39", "EAN13": "ean13",
               "I25": "itf", "PDF417": "pdf417"}
        return [code_from_bytes(fmt.get(r.type, r.type.lower()), r.data) for r in res]

    def retry(self, y, failed) -> list[Code]:
        return []  # zbar reports nothing it found but could not read

    def thorough(self, img: np.ndarray) -> list[Code]:
        return self.scan(img) or self.scan(255 - img)  # then light-on-dark codes


def make_engine(name: str, symbologies: Iterable[str]):
    return {"zxing": ZxingEngine, "zbar": ZbarEngine}[name](list(symbologies))


class Decoder:
    """The staged pipeline above, over one engine."""

    def __init__(self, symbologies=("qr", "code128"), engine="zxing", full_every=4):
        self.engine = make_engine(engine, symbologies)
        self.full_every = max(1, int(full_every))
        self.stats = DecodeStats()

    def frame(self, y: np.ndarray) -> list[Code]:
        """Codes in one live frame."""
        self.stats.frames += 1
        codes, failed = self.engine.live(y)
        if not codes and self.stats.frames % self.full_every == 0:
            self.stats.full_passes += 1
            codes, more = self.engine.periodic(y)
            failed += more
        if not codes and failed:
            self.stats.retries += 1
            codes = self.engine.retry(y, failed)
        return codes

    def still(self, y: np.ndarray) -> list[Code]:
        """Codes in a still image: the live stages, then a thorough pass."""
        view = y[::2, ::2] if max(y.shape) > 2000 else y  # big photos: the pyramid handles scale
        codes, failed = self.engine.live(view)
        if not codes:
            more_codes, more = self.engine.periodic(view)
            codes, failed = more_codes, failed + more
        if not codes and failed:
            codes = self.engine.retry(view, failed)
        if not codes:
            codes = self.engine.thorough(y)
        return _unique(codes)


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
