"""Camera sources behind one small interface.

A source is started, then `read(timeout)` hands back a `Frame` whose `y` is a
grey 2-D uint8 view, or None when no frame came in time. `frame.release()`
gives the buffer back to the camera; it must be called exactly once, by
whoever holds the frame last. `finished` is True once a finite source (replay)
has delivered its last frame.

A frame may also carry `main`: the same moment at a higher resolution (the
Pi's main stream, gate.sources.picam), which the decoder uses only to re-read regions
the `y` pass could not. Memory and replay sources can offer the same pair,
so that path runs off a Pi too.
"""

from __future__ import annotations

import abc
import logging
import os
import queue
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from gate.core.clock import now_ms
from gate.core.errors import CameraError
from gate.core.events import Frame
from gate.core.worker import Worker

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

class Source(abc.ABC):
    """The interface every camera source implements."""

    name = "source"
    finished = False

    def start(self) -> None:
        """Open the device; raises CameraError with a one-line reason."""

    @abc.abstractmethod
    def read(self, timeout: float) -> Optional[Frame]:
        """The next frame, or None if none came within `timeout` seconds."""

    def set_rate(self, fps: float) -> None:
        """Change the frame rate (handheld idle/active); optional."""

    def refocus(self) -> bool:
        """Start a focus cycle where the camera has autofocus (bounded rate);
        True when one was started. Most sources have nothing to focus."""
        return False

    def close(self) -> None:
        """Stop and release the device; idempotent."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class MemorySource(Source):
    """Frames from an iterable (in memory for benches and tests), paced like a camera
    at `fps`; fps=0 hands them over as fast as they are read. An item is a
    grey array, or a pair (y, main) of the same moment at two resolutions."""

    name = "memory"

    def __init__(self, frames=(), fps: float = 0.0):
        self._frames: Optional[Iterator[np.ndarray]] = iter(frames)
        self.fps = fps
        self._next_t = 0.0
        self._seq = 0

    def start(self) -> None:
        self._next_t = time.perf_counter()

    def _wait_turn(self, timeout: float, fps: float) -> bool:
        """Sleep until the next frame is due; False when that is more than `timeout` away."""
        if not fps:
            return True
        wait = self._next_t - time.perf_counter()
        if wait > timeout:
            time.sleep(timeout)
            return False
        if wait > 0:
            time.sleep(wait)
        self._next_t = max(self._next_t + 1.0 / fps, time.perf_counter() - 1.0)  # bounded catch-up
        return True

    def _emit(self, y) -> Frame:
        self._seq += 1
        main = None
        if isinstance(y, tuple):
            y, main = y
        return Frame(y=y, seq=self._seq, t_arrival=time.monotonic(), ts_ms=now_ms(), main=main)

    def read(self, timeout: float) -> Optional[Frame]:
        if self._frames is None or self.finished or not self._wait_turn(timeout, self.fps):
            return None
        y = next(self._frames, None)
        if y is None:
            self.finished = True
            return None
        return self._emit(y)


class ReplaySource(MemorySource):
    """A folder of images (name order) or a video file, paced like a camera.

    With main_scale > 1 each image is the `main` frame and `y` its box-filtered
    reduction by that factor, as a Pi's two streams would deliver them."""

    name = "replay"

    def __init__(self, path, fps: float = 30.0, loop: bool = False, main_scale: int = 1):
        super().__init__((), fps)
        self.path = Path(path)
        self.loop = loop
        self.main_scale = max(1, int(main_scale))
        self._frames = None

    def start(self) -> None:
        if not self.path.exists():
            raise CameraError(f"replay source {self.path} does not exist")
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise CameraError(f"replay folder {self.path} holds no images")
            self._frames = self._images(files)
        else:
            self._frames = self._video(self.path)
        super().start()

    def _images(self, files):
        while True:
            for f in files:
                img = load_grey(f)
                yield (reduce(img, self.main_scale), img) if self.main_scale > 1 else img
            if not self.loop:
                return

    def _video(self, path):
        try:
            import cv2
        except ImportError:
            raise CameraError("replaying a video file needs OpenCV: pip install 'gate[v4l2]'") from None
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise CameraError(f"cannot open video {path}")
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield bgr[:, :, 1] if bgr.ndim == 3 else bgr  # green ~ luminance, a view
        finally:
            cap.release()


class V4L2Source(Source):
    """A USB camera through OpenCV's V4L2 backend (optional extra `v4l2`)."""

    name = "v4l2"

    def __init__(self, device: str, width=640, height=480, fps=30):
        self.device, self.width, self.height, self.fps = device, width, height, fps
        self.cap = None
        self._seq = 0
        self._yuyv = False
        self._frames: "queue.Queue" = queue.Queue(maxsize=1)
        self._reader: Optional[_V4L2Reader] = None

    def start(self) -> None:
        try:
            import cv2
        except ImportError:
            raise CameraError("USB cameras need OpenCV: pip install 'gate[v4l2]'") from None
        if not os.path.exists(self.device):
            raise CameraError(f"{self.device} does not exist: is the USB camera plugged in? (ls /dev/video*)")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise CameraError(f"cannot open {self.device}: is the user in the 'video' group?")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        # Raw YUYV lets us take the Y samples as a strided view, no colour conversion.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"YUYV"))
        self._yuyv = bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        self.cap = cap
        self._frames = queue.Queue(maxsize=1)
        self._reader = _V4L2Reader(cap, self._frames)
        self._reader.start()

    def read(self, timeout: float) -> Optional[Frame]:
        """The newest frame, or None after `timeout` (OpenCV's own read blocks without one)."""
        try:
            img = self._frames.get(timeout=timeout)
        except queue.Empty:
            return None
        if img.ndim == 3 and img.shape[2] == 3:
            y = img[:, :, 1]
        elif self._yuyv and img.ndim == 2 and img.shape[1] == self.width * 2:
            y = img[:, 0::2]
        elif img.ndim == 3 and img.shape[2] == 2:
            y = img[:, :, 0]
        else:
            y = img.reshape(self.height, -1)[:, : self.width]
        self._seq += 1
        return Frame(y=y, seq=self._seq, t_arrival=time.monotonic(), ts_ms=now_ms())

    def close(self) -> None:
        cap, self.cap = self.cap, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stopping.set()
        if cap is not None:
            cap.release()          # also ends a read blocked in the driver
        if reader is not None:
            reader.stop(timeout=1.0)


class _V4L2Reader(Worker):
    """Reads OpenCV frames on its own thread into a hand-off of one (newest wins)."""

    def __init__(self, cap, frames: "queue.Queue"):
        super().__init__("v4l2-reader")
        self.cap, self.frames = cap, frames

    def run(self) -> None:
        while not self.stopping.is_set():
            ok, img = self.cap.read()
            if not ok:
                self.stopping.wait(0.05)
                continue
            try:
                self.frames.put_nowait(img)
            except queue.Full:
                try:
                    self.frames.get_nowait()
                except queue.Empty:
                    pass
                self.frames.put_nowait(img)


class SimulatedSource(MemorySource):
    """Rendered frames of patrons holding up tickets, for the demo.

    `next_code()` gives the next patron's code (None: nobody for a while) and
    raises StopIteration when the crowd is through. Each ticket is held up for
    `hold` frames after `gap` empty ones; `on_present(code)` and `on_leave()`
    let the demo press a handheld's trigger or walk a patron through.
    """

    name = "simulated"

    def __init__(self, next_code: Callable[[], Optional[str]], fps=10, hold=4, gap=6, size=(640, 480),
                 seed=0, symbology="qr", on_present=None, on_leave=None):
        from gate.sim.render import Scene
        super().__init__((), fps)
        self.next_code, self.hold, self.gap = next_code, hold, gap
        self.scene = Scene(size=size, seed=seed)
        self.symbology = symbology
        self.on_present, self.on_leave = on_present, on_leave
        self._plan: list = []
        self._presenting = False
        self.rate = fps

    def set_rate(self, fps: float) -> None:
        self.rate = fps

    def read(self, timeout: float) -> Optional[Frame]:
        if self.finished or not self._wait_turn(timeout, self.rate):
            return None
        if not self._plan:
            if self._presenting and self.on_leave:
                self.on_leave()
            self._presenting = False
            try:
                code = self.next_code()
            except StopIteration:
                self.finished = True
                return None
            self._plan = [None] * self.gap
            if code:
                self._plan += [self.scene.present(code, self.symbology)] * self.hold
                self._presenting = True
                if self.on_present:
                    self.on_present(code)
        y = self._plan.pop(0)
        return self._emit(self.scene.empty if y is None else y)


def reduce(img: np.ndarray, k: int) -> np.ndarray:
    """img shrunk k times by averaging k x k blocks (what an ISP's scaler does,
    roughly; plain decimation would alias fine bars into nonsense)."""
    h, w = img.shape[0] // k * k, img.shape[1] // k * k
    blocks = img[:h, :w].reshape(h // k, k, w // k, k).astype(np.uint16)
    return (blocks.sum(axis=(1, 3)) // (k * k)).astype(np.uint8)


def load_grey(path) -> np.ndarray:
    """Read an image file as a grey uint8 array (luminance)."""
    from PIL import Image, ImageOps
    with Image.open(path) as opened:
        upright = ImageOps.exif_transpose(opened)
        return np.asarray(upright.convert("L"))


def open_source(spec: str, camera_cfg=None) -> Source:
    """Build a source from `picamera2`, `v4l2:/dev/videoN` or `replay:PATH[@FPS]`."""
    c = camera_cfg
    w, h, fps = (c.width, c.height, c.fps) if c else (640, 480, 30)
    if spec == "picamera2":
        from gate.sources.picam import Picamera2Source
        if c is None:
            return Picamera2Source(w, h, fps)
        return Picamera2Source(w, h, fps, c.max_exposure_us, c.autofocus, c.lens_position,
                               main_scale=c.main_scale, refocus_s=c.refocus_s)
    if spec.startswith("v4l2:"):
        return V4L2Source(spec[5:] or "/dev/video0", w, h, fps)
    if spec.startswith("replay:"):
        path, _, rate = spec[7:].rpartition("@")
        if not path or not _looks_like_rate(rate):
            path, rate = spec[7:], ""
        return ReplaySource(path, float(rate) if rate else float(fps))
    raise CameraError(f"unknown camera source {spec!r}: use picamera2, v4l2:/dev/videoN or replay:PATH[@FPS]")


def _looks_like_rate(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


from gate.sources.picam import Picamera2Source  # noqa: E402,F401  (its home was here; it needs Source above)
