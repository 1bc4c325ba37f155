"""The capture thread: camera to a bounded hand-off, with a watchdog that restarts it.

The camera is never made to wait: frames go through a queue of two, and when
the loop is behind the oldest is released and counted as dropped. An unpaced
source (a replay at full speed) waits for room instead, so no frame is lost
in a test or a replay. A camera that stops delivering for `stall_s` is
reported and restarted, backing off up to ten seconds between attempts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from gate.core.worker import Worker

log = logging.getLogger(__name__)


class Capture(Worker):
    def __init__(self, source, stall_s: float):
        super().__init__("capture")
        self.source = source
        self.stall_s = stall_s
        self.frames: "queue.Queue" = queue.Queue(maxsize=2)
        self.done = threading.Event()     # the source ran out (a replay's last frame is queued)
        self.camera_ok = False
        self.camera_error = ""
        self.dropped = 0

    def run(self) -> None:
        last = time.monotonic()
        paced = getattr(self.source, "fps", 1) != 0
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                try:
                    frame = self.source.read(0.25)
                except Exception as exc:  # CameraError, TimeoutError, driver faults
                    frame = None
                    self.lost(str(exc))
                if frame is None:
                    if self.source.finished:
                        break
                    if time.monotonic() - last > self.stall_s:
                        self.lost(f"no frame for {self.stall_s:g} s")
                        if self._restart():
                            last, backoff = time.monotonic(), 0.5
                        else:
                            self.stopping.wait(backoff)
                            backoff = min(backoff * 2, 10)
                    continue
                last = time.monotonic()
                if not self.camera_ok:
                    log.info("camera delivering frames")
                self.camera_ok, self.camera_error = True, ""
                self._hand_on(frame, paced)
        finally:
            self.done.set()

    def _hand_on(self, frame, paced: bool) -> None:
        if paced:
            try:
                self.frames.put_nowait(frame)
            except queue.Full:
                try:
                    self.frames.get_nowait().release()
                    self.dropped += 1
                except queue.Empty:
                    pass
                self.frames.put_nowait(frame)
            return
        while not self.stopping.is_set():
            try:
                self.frames.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue
        frame.release()

    def lost(self, why: str) -> None:
        if self.camera_ok or not self.camera_error:
            log.error("camera lost: %s", why)
        self.camera_ok, self.camera_error = False, why

    def _restart(self) -> bool:
        try:
            self.source.close()
            self.source.start()
            log.info("camera restarted")
            return True
        except Exception as exc:
            self.camera_error = str(exc)
            return False

    def discard(self) -> None:
        """Give every queued frame back to the camera."""
        while True:
            try:
                self.frames.get_nowait().release()
            except queue.Empty:
                return
