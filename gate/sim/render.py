"""Rendered barcodes and camera-like scenes, for the demo, tests and benches.

QR symbols come from segno, linear ones from zxing-cpp's writer; both are
real encoders, so what the decoder reads back proves something.
"""

from __future__ import annotations

import functools
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("clean", "blurred", "tilted", "noisy", "low_contrast", "glare", "empty")


def symbol_modules(data: Union[str, bytes], symbology: str = "qr") -> np.ndarray:
    """The symbol as a 2-D bool array of modules (True = dark), quiet zone included."""
    if symbology == "qr":
        import segno
        return np.pad(np.array(segno.make_qr(data, error="m").matrix, dtype=bool), 4)
    import zxingcpp
    fmt = {"code128": zxingcpp.BarcodeFormat.Code128, "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
           "aztec": zxingcpp.BarcodeFormat.Aztec, "pdf417": zxingcpp.BarcodeFormat.PDF417}[symbology]
    img = np.asarray(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(data, fmt), scale=1))
    return img < 128


@functools.lru_cache(maxsize=256)
def symbol_image(data: Union[str, bytes], symbology: str = "qr", module_px: int = 4,
                 bar_height: int = 80) -> np.ndarray:
    """The symbol rendered black on white at `module_px` pixels per module."""
    m = symbol_modules(data, symbology)
    if m.shape[0] == 1 or symbology == "code128":
        row = m[m.shape[0] // 2]
        m = np.repeat(row[None, :], max(1, bar_height // module_px), axis=0)
        m = np.pad(m, ((2, 2), (0, 0)))
    img = np.where(m, 0, 255).astype(np.uint8)
    return np.kron(img, np.ones((module_px, module_px), dtype=np.uint8))


def _background(size, rng) -> np.ndarray:
    """A plausible empty doorway: gradients, a few blocks and sensor noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 90 + 50 * (xx / w) + 30 * np.sin(yy / 37.0)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 60), rng.integers(0, h - 60)
        bg[y0:y0 + rng.integers(20, 120), x0:x0 + rng.integers(20, 160)] += rng.integers(-50, 50)
    bg += rng.normal(0, 4, size=(h, w))
    return np.clip(bg, 0, 255).astype(np.uint8)


def compose(code: Optional[Union[str, bytes]], kind: str = "clean", size=(640, 480),
            symbology: str = "qr", rng=None, module_px: int = 0) -> np.ndarray:
    """One grey camera frame of `kind` (see KINDS) showing `code` on a ticket."""
    rng = rng if rng is not None else np.random.default_rng(0)
    frame = _background(size, rng).astype(np.float32)
    w, h = size
    if code is not None and kind != "empty":
        sym = symbol_image(code, symbology, module_px or (4 if symbology == "qr" else 2))
        paper = Image.fromarray(np.pad(sym, 12, constant_values=255))
        if kind == "tilted":
            # A hand tilts a ticket freely; a 1-D code must still cross the scan line.
            angle = rng.uniform(15, 35) if symbology in ("qr", "datamatrix", "aztec") else rng.uniform(4, 8)
            paper = paper.rotate(float(angle), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
            mask = np.asarray(paper.rotate(0)) > 0
        if kind == "blurred":
            paper = paper.filter(ImageFilter.GaussianBlur(radius=1.3))
        p = np.asarray(paper).astype(np.float32)
        ph, pw = p.shape
        if ph > h or pw > w:
            raise ValueError(f"symbol {pw}x{ph} does not fit a {w}x{h} frame")
        x0 = int(rng.integers(0, w - pw + 1))
        y0 = int(rng.integers(0, h - ph + 1))
        region = frame[y0:y0 + ph, x0:x0 + pw]
        if kind == "tilted":
            region[mask] = p[mask]
        else:
            region[:] = p
        if kind == "low_contrast":
            region[:] = 110 + region * (50 / 255.0)
        if kind == "glare":
            cy, cx = y0 + ph * rng.uniform(0.2, 0.8), x0 + pw * rng.uniform(0.2, 0.8)
            yy, xx = np.mgrid[0:h, 0:w]
            frame += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (ph / 6) ** 2))
    if kind == "noisy":
        frame += rng.normal(0, 22, size=frame.shape)
    else:
        frame += rng.normal(0, 2, size=frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


class Scene:
    """A fixed doorway; each presentation of a ticket is rendered afresh
    (its own place, tilt or blur), as a camera would see it."""

    def __init__(self, size=(640, 480), seed=0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.empty = _background(size, self.rng)
        self.presentations = 0

    def present(self, code: str, symbology: str = "qr") -> np.ndarray:
        kind = ("clean", "tilted", "blurred", "clean", "low_contrast")[self.presentations % 5]
        self.presentations += 1
        return compose(code, kind, self.size, symbology, self.rng)
