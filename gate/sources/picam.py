"""The Raspberry Pi camera through picamera2: two streams, one focus nudge.

Every frame carries the Y plane of the YUV420 `lores` stream (the cheap live
pass) and, when `main_scale` > 1, the Y plane of the `main` stream at that
many times the size: the decoder cuts a region from it only where the lores
pass saw a symbol it could not read. Both are views of the camera's buffers
(MappedArray), no copy; `frame.release()` gives both back.

Camera Module 3's continuous autofocus can stick after a quick near-to-far
change. `refocus()` (called by the loop when symbols keep failing to decode)
starts one autofocus scan, at most once every `refocus_s`, and returns to
continuous autofocus afterwards. A fixed lens position is never touched.

picamera2 is imported only inside `start()`, so the package and its tests run
anywhere; `factory`, `mapped_array` and `clock` let tests pass stand-ins.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from typing import Any, Optional

from gate.camera import Source
from gate.core.clock import now_ms
from gate.core.errors import CameraError
from gate.core.events import Frame

# libcamera control enum values (libcamera.controls.AfModeEnum etc.); passed as
# ints so this module needs no libcamera import.
AF_MODE_MANUAL, AF_MODE_AUTO, AF_MODE_CONTINUOUS = 0, 1, 2
AF_RANGE_MACRO = 1
AF_SPEED_FAST = 1
AF_TRIGGER_START = 0
AF_SCAN_S = 1.0      # an autofocus scan's length before continuous mode resumes


class Picamera2Source(Source):
    name = "picamera2"

    def __init__(self, width=640, height=480, fps=30, max_exposure_us=8000,
                 autofocus=True, lens_position=None, factory=None, mapped_array=None,
                 main_scale: int = 1, refocus_s: float = 3.0, clock=time.monotonic):
        self.size = (int(width), int(height))
        self.main_scale = max(1, int(main_scale))
        self.fps = fps
        self.max_exposure_us = max_exposure_us
        self.autofocus = autofocus
        self.lens_position = lens_position
        self.refocus_s = refocus_s
        self._factory = factory
        self._mapped_array = mapped_array
        self._clock = clock
        self.cam: Optional[Any] = None   # a Picamera2 (no type information), or the factory's stand-in
        self._seq = 0
        self._af_lock = threading.Lock()   # refocus() runs on the loop's thread, read() on capture's
        self._af_last: Optional[float] = None
        self._af_resume_at: Optional[float] = None
        self.refocuses = 0

    def _import(self):
        if self._factory is not None:
            return
        try:
            from picamera2 import MappedArray, Picamera2
        except (ImportError, ValueError) as exc:
            # ValueError: a pip-upgraded numpy in the venv breaks apt's simplejpeg.
            raise CameraError(
                f"picamera2 is not usable ({exc}); on a Pi: apt install python3-picamera2 "
                "and make the venv with --system-site-packages, keeping apt's numpy"
            ) from None
        self._factory, self._mapped_array = Picamera2, MappedArray

    def controls(self, available) -> dict:
        """The controls to apply, given the sensor's advertised camera_controls."""
        frame_us = int(1_000_000 / self.fps)
        ctl: dict[str, object] = {"FrameDurationLimits": (frame_us, frame_us)}
        if self.max_exposure_us and "ExposureTime" in available:
            # A fixed short shutter keeps a moving ticket sharp; the AGC still
            # adjusts analogue gain for brightness.
            ctl["ExposureTime"] = int(min(self.max_exposure_us, frame_us))
        if "AfMode" in available:
            if self.lens_position is not None:
                ctl.update(AfMode=AF_MODE_MANUAL, LensPosition=float(self.lens_position))
            elif self.autofocus:
                ctl.update(AfMode=AF_MODE_CONTINUOUS, AfRange=AF_RANGE_MACRO, AfSpeed=AF_SPEED_FAST)
        return ctl

    @property
    def main_size(self) -> tuple:
        return (self.size[0] * self.main_scale, self.size[1] * self.main_scale)

    def start(self) -> None:
        self._import()
        info = getattr(self._factory, "global_camera_info", None)
        if info is not None and not info():
            raise CameraError("no camera found: check the ribbon cable seating and "
                              "that `rpicam-hello --list-cameras` lists one")
        try:
            self.cam = cam = self._factory()
        except (IndexError, RuntimeError) as exc:
            raise CameraError(f"camera did not start ({exc}): check the cable, and that no "
                              "other process (rpicam-*, another gate) holds the camera") from None
        cfg = cam.create_video_configuration(
            main={"size": self.main_size, "format": "YUV420"},
            lores={"size": self.size, "format": "YUV420"},
            buffer_count=6,
        )
        cam.configure(cfg)
        cam.set_controls(self.controls(cam.camera_controls))
        cam.start()

    def set_rate(self, fps: float) -> None:
        if self.cam is not None:
            us = int(1_000_000 / fps)
            self.cam.set_controls({"FrameDurationLimits": (us, us)})

    def can_refocus(self) -> bool:
        return (self.cam is not None and self.autofocus and self.lens_position is None
                and self.refocus_s > 0 and "AfMode" in self.cam.camera_controls)

    def refocus(self) -> bool:
        """Start one autofocus scan unless one started within `refocus_s`;
        True when it did. picamera2's autofocus_cycle(wait=False) would hand
        its job the request stream until the scan ends, stalling our
        capture_request behind it, so the scan is started with controls."""
        cam = self.cam
        if cam is None or not self.can_refocus():
            return False
        with self._af_lock:
            now = self._clock()
            if self._af_last is not None and now - self._af_last < self.refocus_s:
                return False
            self._af_last, self._af_resume_at = now, now + AF_SCAN_S
            self.refocuses += 1
        cam.set_controls({"AfMode": AF_MODE_AUTO, "AfTrigger": AF_TRIGGER_START})
        return True

    def _resume_continuous(self, cam: Any) -> None:
        with self._af_lock:
            if self._af_resume_at is None or self._clock() < self._af_resume_at:
                return
            self._af_resume_at = None
        cam.set_controls({"AfMode": AF_MODE_CONTINUOUS})

    def read(self, timeout: float) -> Optional[Frame]:
        if self.cam is None:
            raise CameraError("camera is not started")
        if self._af_resume_at is not None:
            self._resume_continuous(self.cam)
        try:
            request = self.cam.capture_request(wait=timeout)
        except TimeoutError:
            return None
        t = time.monotonic()
        maps: list[AbstractContextManager] = []   # picamera2 MappedArrays, entered
        try:
            y = self._plane(request, "lores", self.size, maps)
            main = self._plane(request, "main", self.main_size, maps) if self.main_scale > 1 else None
        except Exception:
            for m in maps:
                m.__exit__(None, None, None)
            request.release()
            raise
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                for m in maps:
                    m.__exit__(None, None, None)
                request.release()

        self._seq += 1
        return Frame(y=y, seq=self._seq, t_arrival=t, ts_ms=now_ms(), release=release, main=main)

    def _plane(self, request, stream: str, size, maps):
        mapped = self._mapped_array(request, stream)
        arr = mapped.__enter__().array
        maps.append(mapped)
        w, h = size
        return arr[:h, :w]  # YUV420: rows 0..h are Y; the stride may exceed w

    def close(self) -> None:
        cam, self.cam = self.cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
