"""One gate's capture → decode → decide → feedback loop.

Threads and what may block them:
- capture: reads the camera and hands frames on through a bounded queue of
  two. When the loop is behind, the oldest frame is released and counted as
  dropped: the camera is never made to wait. A stalled camera is reported and
  restarted here.
- the loop (the caller's thread): decode, decide, feedback.show() (queues
  only), then the durable outbox write, then the turnstile. Never touches the
  network.
- the MQTT link, the feedback patterns and the turnstile timers each run on
  their own threads and talk to the loop through `control`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from gate import systemd
from gate.camera import Source
from gate.decide import GateRules, decide
from gate.decode import Debouncer, Decoder
from gate.errors import CameraError
from gate.events import History, ScanEvent, Verdict
from gate.feedback import Feedback
from gate.hospitality import attention
from gate.outbox import Outbox
from gate.resolve import Resolver
from gate.tickets import TicketStore

log = logging.getLogger("gate.scan")

CLOCK_SANE_MS = 1_700_000_000_000   # Nov 2023: a clock before this was never set


def percentile(values, q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def cpu_temperature() -> Optional[float]:
    try:
        with open("/sys/class/thermal/thermal_zone0/temp") as f:
            return int(f.read()) / 1000
    except (OSError, ValueError):
        return None


def clock_synchronised() -> bool:
    if time.time() * 1000 < CLOCK_SANE_MS:
        return False
    if os.path.isdir("/run/systemd/timesync"):
        return os.path.exists("/run/systemd/timesync/synchronized")
    return True


class Scanner:
    def __init__(self, cfg, source: Source, *, feedback: Feedback = None, pin_factory=None,
                 on_verdict: Callable[[Verdict, ScanEvent], None] = None, connect: bool = True,
                 verifiers=None, stop: Optional[threading.Event] = None):
        self.cfg = cfg
        self.gate = cfg.gate
        self.source = source
        storage = Path(cfg.storage.dir)
        storage.mkdir(parents=True, exist_ok=True)
        self.store_path = storage / "tickets.db"
        self.store = TicketStore(self.store_path)
        self.outbox = Outbox(storage / "outbox.db")
        if verifiers is None:
            from gate.resolve import load_verifiers
            verifiers = load_verifiers(cfg)
        self.resolver = Resolver(self.store, verifiers, cfg.decode.max_payload)
        self.decoder = Decoder(cfg.decode.symbologies, cfg.decode.engine, cfg.decode.full_every)
        self.debounce = Debouncer(cfg.decode.debounce_s)
        self.rules = GateRules.from_config(cfg.gate)
        self.pin_factory = pin_factory
        self.feedback = feedback or Feedback.from_config(cfg.feedback, pin_factory, _display(cfg))
        self.on_verdict = on_verdict
        self.frames: "queue.Queue" = queue.Queue(maxsize=2)
        self.control: "queue.Queue" = queue.Queue()
        self.stop = stop or threading.Event()
        self.capture_done = threading.Event()
        self.camera_ok = False
        self.camera_error = ""
        self.dropped = 0
        self.processed = 0
        self.decode_ms: deque = deque(maxlen=600)
        self.frame_times: deque = deque(maxlen=120)
        self.verdicts = 0
        self.free_passage = False
        self._scanning = None
        self.turnstile = self.trigger = None
        relay = self.feedback.relay if "relay" in self.feedback.fitted else None
        if self.gate.profile == "turnstile":
            from gate.door import Turnstile
            self.turnstile = Turnstile(cfg.turnstile, relay, pin_factory=pin_factory,
                                       on_annul=lambda tok: self.control.put(("annul", tok)),
                                       on_exit_passage=lambda: self.control.put(("exit_passage", None)),
                                       on_free_passage=lambda on: self.control.put(("free", on)))
        else:
            from gate.door import Trigger
            self.trigger = Trigger(cfg.handheld.trigger_pin, cfg.handheld.linger_s, pin_factory=pin_factory,
                                   on_change=self._trigger_pressed)
        self.link = None
        if connect and cfg.mqtt.enabled:
            from gate.updater import TicketUpdater
            from gate.link import GateLink
            self.updater = TicketUpdater(self.store_path, on_applied=lambda v: self.control.put(("data", v)))
            self.link = GateLink(cfg, storage / "outbox.db", profile=self.gate.profile,
                                 on_remote_scan=lambda e: self.control.put(("remote", e)),
                                 on_tickets=self.updater.offer, health=self.health)
        self.has_data = self.store.count() > 0 or bool(self.resolver.verifiers)
        self.data_version = self.store.version

    def _trigger_pressed(self, _on: bool) -> None:
        """Full rate at once on a press, not one idle frame later."""
        self._scanning = True
        self.source.set_rate(self.cfg.camera.fps)

    # -- capture thread --------------------------------------------------------
    def _capture(self) -> None:
        stall = self.cfg.camera.stall_s
        last = time.monotonic()
        paced = not (getattr(self.source, "fps", 1) == 0)
        backoff = 0.5
        while not self.stop.is_set():
            try:
                frame = self.source.read(0.25)
            except Exception as exc:  # CameraError, TimeoutError, driver faults
                frame = None
                self._camera_lost(str(exc))
            if frame is None:
                if self.source.finished:
                    break
                if time.monotonic() - last > stall:
                    self._camera_lost(f"no frame for {stall:g} s")
                    if self._restart_camera():
                        last, backoff = time.monotonic(), 0.5
                    else:
                        self.stop.wait(backoff)
                        backoff = min(backoff * 2, 10)
                continue
            last = time.monotonic()
            if not self.camera_ok:
                log.info("camera delivering frames")
            self.camera_ok, self.camera_error = True, ""
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
            else:
                while not self.stop.is_set():
                    try:
                        self.frames.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        self.capture_done.set()

    def _camera_lost(self, why: str) -> None:
        if self.camera_ok or not self.camera_error:
            log.error("camera lost: %s", why)
        self.camera_ok, self.camera_error = False, why

    def _restart_camera(self) -> bool:
        try:
            self.source.close()
            self.source.start()
            log.info("camera restarted")
            return True
        except Exception as exc:
            self.camera_error = str(exc)
            return False

    # -- the loop --------------------------------------------------------------
    def run(self) -> int:
        """Scan until stopped (or a replay runs out); returns an exit code."""
        try:
            self.source.start()
            self.camera_ok = True
        except CameraError as exc:
            log.error("%s", exc)
            self.close()
            return 1
        if self.link:
            self.updater.start()
            self.link.start()
        cap = threading.Thread(target=self._capture, name="capture", daemon=True)
        cap.start()
        log.info("gate %s (%s) scanning from %s", self.gate.id, self.gate.profile, self.source.name)
        watchdog = systemd.Watchdog()
        next_check = 0.0
        ready = False
        try:
            while True:
                self._drain_control()
                now = time.monotonic()
                if now >= next_check:
                    self._update_faults()
                    next_check = now + 1.0
                try:
                    frame = self.frames.get(timeout=0.05)
                except queue.Empty:
                    if self.stop.is_set() or (self.capture_done.is_set() and self.frames.empty()):
                        break
                    continue
                self.process(frame)
                watchdog.ping()
                if not ready:
                    systemd.notify("READY=1")
                    ready = True
            if not self.stop.is_set() and self.turnstile is not None:
                # A finished source: let admissions awaiting a passage resolve (their annulment is a verdict).
                end = time.monotonic() + self.cfg.turnstile.passage_timeout_s + 1
                while self.turnstile.pending and time.monotonic() < end and not self.stop.is_set():
                    time.sleep(0.05)
                time.sleep(0.1)
            self._drain_control()
            return 0
        finally:
            self.stop.set()
            cap.join(timeout=2)
            self.close()

    def process(self, frame) -> list[Verdict]:
        """Decode one frame and give a verdict for each newly presented code."""
        self.processed += 1
        self.frame_times.append(frame.t_arrival)
        if self.trigger is not None:
            active = self.trigger.active()
            if active != self._scanning:  # only on a change: on picamera2 this is a control write
                self._scanning = active
                self.source.set_rate(self.cfg.camera.fps if active else self.cfg.camera.idle_fps)
            if not active:
                frame.release()
                return []
        t0 = time.perf_counter()
        try:
            codes = self.decoder.frame(frame.y)
        finally:
            frame.release()
        self.decode_ms.append((time.perf_counter() - t0) * 1000)
        out = []
        for code in codes:
            if self.trigger is not None and not self.trigger.wants_verdict():
                break  # this press has had its verdict; what else is in view is not presented
            if not self.debounce.is_new(code.raw):
                continue
            out.append(self.admit_code(code, frame.ts_ms))
        return out

    def admit_code(self, code, ts_ms: int) -> Verdict:
        with self.store.snapshot():
            res = self.resolver.resolve(code)
            t = res.ticket
            hist = self.store.history(t.ticket_id) if t is not None else History()
        v = decide(res, hist, self.rules, ts_ms)
        v.attention, v.level, v.greeting = attention(t, self.cfg.hospitality.tags)
        self.feedback.show(v.reason, v.level if v.admitted else "", display_lines(v))
        event = self.outbox.append(self.gate.id, ts_ms, t.event if t else "", v.ticket_ref,
                                   "out" if v.result == "exited" else "in", v.result, v.reason, v.attention)
        if v.result in ("admitted", "exited") and t is not None:
            self.store.record(t.ticket_id, v.result, ts_ms, self.gate.id)
        if v.admitted and self.turnstile is not None:
            self.turnstile.admit((event, v))
        if self.trigger is not None:
            self.trigger.answered_press()
        self.verdicts += 1
        if self.on_verdict:
            self.on_verdict(v, event)
        return v

    def _drain_control(self) -> None:
        from gate.decide import annul
        while True:
            try:
                kind, arg = self.control.get_nowait()
            except queue.Empty:
                return
            if kind == "remote":
                e = arg
                if e.ticket and e.result in ("admitted", "exited", "annulled"):
                    self.store.record(e.ticket, e.result, e.ts, e.gate)
            elif kind == "annul":
                first, v = arg
                self.store.record(first.ticket, "annulled", first.ts, self.gate.id)
                va = annul(v)
                self.feedback.show("not_passed")
                e = self.outbox.append(self.gate.id, first.ts, first.event, first.ticket, "in",
                                       "annulled", "not_passed", first.attention)
                if self.on_verdict:
                    self.on_verdict(va, e)
            elif kind == "exit_passage":
                e = self.outbox.append(self.gate.id, int(time.time() * 1000), "", "", "out", "exited", "exit")
                if self.on_verdict:
                    self.on_verdict(Verdict("exited", "exit", detail="exit sensor"), e)
            elif kind == "free":
                self.free_passage = arg
            elif kind == "data":
                self.data_version = arg
                self.has_data = self.store.count() > 0 or bool(self.resolver.verifiers)

    def _update_faults(self) -> None:
        fault = None
        if not self.camera_ok:
            fault = "camera"
        elif not self.has_data:
            fault = "tickets"
        elif not clock_synchronised():
            fault = "clock"
        elif self.link is not None and self.link.offline_for() > 60:
            fault = "broker"
        self.feedback.set_fault(fault)
        self.fault = fault

    def health(self) -> dict:
        ft = list(self.frame_times)
        fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 1 and ft[-1] > ft[0] else 0.0
        ms = list(self.decode_ms)
        return {
            "gate": self.gate.id, "ts": int(time.time() * 1000), "fps": round(fps, 1),
            "decode_ms_p50": round(percentile(ms, 0.5), 3), "decode_ms_p95": round(percentile(ms, 0.95), 3),
            "frames": self.processed, "dropped": self.dropped, "verdicts": self.verdicts,
            # health() runs on the publisher thread: it reads through the publisher's connection
            "outbox_depth": (self.link.outbox if self.link else self.outbox).depth(), "camera_ok": self.camera_ok, "camera_error": self.camera_error,
            "ticket_data_version": self.data_version, "cpu_temp": cpu_temperature(),
            "fault": getattr(self, "fault", None), "free_passage": self.free_passage,
            "rejected_codes": vars(self.resolver.rejects).copy(),
            "malformed_payloads": dict(self.link.dropped) if self.link else {},
        }

    def close(self) -> None:
        """Relay off first, then everything else; safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for part in (self.turnstile, self.trigger, self.feedback):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    log.exception("closing %s", type(part).__name__)
        try:
            self.source.close()
        except Exception:
            log.exception("closing the camera")
        while True:
            try:
                self.frames.get_nowait().release()
            except queue.Empty:
                break
        if self.link:
            self.link.close()
            self.updater.close()
        self.outbox.close()
        self.store.close()


def display_lines(v: Verdict) -> tuple:
    t = v.ticket
    head = {"admitted": "WELCOME", "exited": "GOODBYE", "rejected": "STOP", "annulled": "NOT PASSED"}[v.result]
    lines = [f"{head} {v.reason}"]
    if t is not None:
        if t.holder:
            lines.append(t.holder)
        if t.seat:
            lines.append(f"Seat {t.seat}")
    if v.greeting and v.admitted:
        lines.append(v.greeting)
    if v.detail and not v.admitted:
        lines.append(v.detail)
    return tuple(lines)


def _display(cfg):
    if cfg.feedback.display == "none":
        return None
    from gate.display import make_display
    return make_display(cfg.feedback.display)
