"""One gate's capture → decode → decide → feedback loop.

Threads and what may block them:
- capture (gate/sources/capture.py): reads the camera and hands frames on through a
  bounded queue of two; never waits for the loop.
- the loop (the caller's thread, here): turns frames (or a reader's codes) into
  codes, debounces them and hands each to the admission (gate/admission.py:
  guards, rules, feedback queued, durable outbox write, turnstile). Never
  touches the network.
- the MQTT link, the ticket updater, the feedback patterns and the turnstile
  timers each run on their own threads and reach the loop only through typed
  control messages (gate/core/events.py) on `parts.control`.

The parts are built by gate/build.py; this module wires nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Optional

from gate.admission import Admission
from gate.build import GateParts, build_gate, control_handlers
from gate.core import startup, systemd
from gate.core.clock import clock_synchronised, now_ms
from gate.core.errors import CameraError
from gate.core.events import Code, DoorFault, FreePassage, TicketDataApplied, Verdict
from gate.decode import Debouncer, Decoder
from gate.feedback import Feedback
from gate.modes import GateMode
from gate.resolve import Resolver
from gate.sources.capture import Capture
from gate.sources.readers import CodeCapture, CodeSource
from gate.state.health import cpu_temperature, percentile
from gate.state.outbox import Outbox
from gate.state.remote import RemoteScans
from gate.state.tickets import TicketStore

log = logging.getLogger(__name__)

BROKER_FAULT_S = 60      # offline this long: the idle LED shows a broker fault


class ScanLoop:
    """Runs a built gate until stopped (or a replay runs out)."""

    def __init__(self, parts: GateParts, stop: Optional[threading.Event] = None):
        self.parts = parts
        self.cfg = parts.cfg
        self.gate = parts.cfg.gate
        self.source = parts.source
        # build_gate() builds every one of these or raises: a GateParts the loop gets is whole
        store, outbox, feedback, admission = parts.store, parts.outbox, parts.feedback, parts.admission
        modes, remote, decoder, debounce, resolver = parts.modes, parts.remote, parts.decoder, parts.debounce, parts.resolver
        assert (store is not None and outbox is not None and feedback is not None and admission is not None
                and modes is not None and remote is not None and decoder is not None and debounce is not None
                and resolver is not None), "GateParts not built by build_gate()"
        self.store: TicketStore = store
        self.outbox: Outbox = outbox
        self.feedback: Feedback = feedback
        self.admission: Admission = admission
        self.modes: GateMode = modes
        self.remote: RemoteScans = remote
        self.decoder: Decoder = decoder
        self.debounce: Debouncer = debounce
        self.resolver: Resolver = resolver
        self.turnstile, self.trigger, self.link = parts.turnstile, parts.trigger, parts.link
        self.stop = stop or threading.Event()
        self.capture = (CodeCapture(parts.source) if isinstance(parts.source, CodeSource)
                        else Capture(parts.source, self.cfg.camera.stall_s))
        self.camera_lost_at: Optional[float] = None
        self.processed = 0
        self.decode_ms: deque = deque(maxlen=600)
        self.frame_times: deque = deque(maxlen=120)
        self.free_passage = False
        self.fault: Optional[str] = None
        self.clock_ok: Optional[bool] = None   # logged when it changes, not only blinked
        self.disk_low: Optional[bool] = None
        self.disk_readonly = parts.disk.readonly if parts.disk is not None else False
        self.duplicate: Optional[str] = None   # the identity fault as last shown (cleared from outside: reported)
        self._reserve_check = 0.0
        self.has_data = self._has_data()
        self.data_version = self.store.version
        self._handlers = control_handlers(parts, free_passage=self._free_passage, data_applied=self._data_applied)
        if self.link is not None:
            self.link.health = self.health

    # -- figures the tests, health and doctor read ---------------------------------
    @property
    def camera_ok(self) -> bool:
        return self.capture.camera_ok

    @property
    def dropped(self) -> int:
        return self.capture.dropped

    @property
    def verdicts(self) -> int:
        return self.admission.verdicts

    @property
    def on_verdict(self):
        """Called with (verdict, welcome, scan event) after each verdict is on disk; the admission holds it."""
        return self.admission.on_verdict

    @on_verdict.setter
    def on_verdict(self, fn) -> None:
        self.admission.on_verdict = fn

    # -- the loop --------------------------------------------------------------------
    def run(self) -> int:
        """Scan until stopped (or a replay runs out); returns an exit code."""
        try:
            self.source.start()
            self.capture.camera_ok = True
        except CameraError as exc:
            log.error("%s", exc)
            self.close()
            return 1
        if self.link is not None:
            self.parts.updater.start()
            self.link.start()
        self.capture.start()
        self.admission.report_state()   # the status topic says the mode (and any latch) from the start
        self._report_list()
        log.info("gate %s (%s) scanning from %s", self.gate.id, self.gate.profile, self.source.name)
        watchdog = systemd.Watchdog()
        next_check, ready = 0.0, False
        try:
            while not self.stop.is_set():
                self._drain_control()
                now = time.monotonic()
                if now >= next_check:
                    self._update_faults()
                    next_check = now + 1.0
                try:
                    frame = self.capture.frames.get(timeout=0.05)
                except queue.Empty:
                    if self.stop.is_set() or (self.capture.done.is_set() and self.capture.frames.empty()):
                        break
                    continue
                if isinstance(frame, Code):   # a USB or serial scanner hands over codes, not frames
                    self.process_code(frame)
                else:
                    self.process(frame)
                watchdog.ping()
                if not ready:
                    systemd.notify("READY=1")
                    ready = True
                    took = startup.summary("first frame")
                    if took:
                        log.info("ready: first frame decided %s", took)
            if not self.stop.is_set() and self.turnstile is not None:
                # A finished source: let admissions awaiting a passage resolve (their annulment is a verdict).
                ts = self.cfg.turnstile
                self.turnstile.wait_idle(max(ts.passage_timeout_s, ts.assist_timeout_s) + 1)
            self._drain_control()
            return 0
        finally:
            self.stop.set()
            self.capture.stop()
            self.close()

    def process(self, frame) -> list[Verdict]:
        """Decode one frame and give a verdict for each newly presented code."""
        self.processed += 1
        self.frame_times.append(frame.t_arrival)
        if self.trigger is not None:
            active = self.trigger.active()
            self.parts.rate.set(active)
            if not active:
                frame.release()
                return []
        t0 = time.perf_counter()
        try:
            codes = self.decoder.frame(frame.y, frame.main)
        finally:
            frame.release()
        self.decode_ms.append((time.perf_counter() - t0) * 1000)
        if not codes and self.decoder.wants_focus():
            getattr(self.parts.source, "refocus", lambda: False)()   # continuous AF can stick; the camera bounds the rate
        out = []
        for code in codes:
            if self.trigger is not None and not self.trigger.wants_verdict():
                break  # this press has had its verdict; what else is in view is not presented
            if not self.debounce.is_new(code.raw):
                continue
            v = self.admission.present(code, frame.ts_ms)
            if v is not None:
                out.append(v)
        return out

    def process_code(self, code: Code) -> Optional[Verdict]:
        """One code from a scanner that decodes by itself: the same debounce, then the admission."""
        self.processed += 1
        if not self.debounce.is_new(code.raw):
            return None
        return self.admission.present(code, now_ms())

    def _drain_control(self) -> None:
        control = self.parts.control
        while True:
            try:
                msg = control.get_nowait()
            except queue.Empty:
                break
            self._handlers[type(msg)](msg)
        self.remote.apply()   # bounded work per pass, whatever other gates sent

    def _free_passage(self, msg: FreePassage) -> None:
        self.free_passage = msg.active

    def _data_applied(self, msg: TicketDataApplied) -> None:
        self.data_version = msg.version
        self.has_data = self._has_data()
        self._report_list()

    def _report_list(self) -> None:
        """Say on the retained status topic which signed list this gate runs ("series/seq"): the box
        office's `--publish` waits to see its own list there (gate/boxoffice/confirm.py)."""
        if self.link is None or self.store is None:
            return
        st = self.store.list_state()
        if st:
            self.link.report(ticket_list=f"{st['series']}/{st['seq']}")

    def _has_data(self) -> bool:
        """A ticket list, or a key to verify signed tickets with: without either nothing can be admitted."""
        return self.store.count() > 0 or bool(self.resolver.verifiers)

    def _update_faults(self) -> None:
        disk = self.parts.disk
        synced = clock_synchronised()
        if synced != self.clock_ok:
            if not synced:
                log.warning("clock not synchronised (%s): scan times and ticket validity may be wrong; check "
                            "timedatectl and that NTP can reach a server", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
            elif self.clock_ok is not None:
                log.info("clock synchronised again")
            self.clock_ok = synced
        if disk is not None and disk.check_readonly() != self.disk_readonly:
            self.disk_readonly = disk.readonly
            if disk.readonly:
                log.error("STORAGE READ-ONLY: %s became read-only (the kernel remounts an SD card read-only after "
                          "I/O errors): verdicts are decided and shown, nothing is recorded, no turnstile "
                          "releases; check dmesg, then fsck or replace the card", disk.dir)
            else:
                log.warning("storage %s is writable again", disk.dir)
        low = disk.low() if disk is not None else False
        if low != self.disk_low:
            if low:
                log.warning("low disk space under %s: %d MB free; the outbox needs room while the broker is "
                            "away (free space now)", disk.dir, disk.free_mb())
            self.disk_low = low
        disk_full = self.admission.disk_full
        if disk is not None and not disk_full and time.monotonic() > self._reserve_check:
            self._reserve_check = time.monotonic() + 60
            disk.keep_reserve()   # back once there is room again
        now = self.modes.snapshot()
        if now.duplicate != self.duplicate:
            if self.duplicate and not now.duplicate:
                self.admission.report_state()   # cleared (a staff card, or `gate doctor --clear-latch` from outside)
            if self.link is not None:
                self.link.identity.follow(now.duplicate)
            self.duplicate = now.duplicate
        rehearsal = now.event_mode == "test"
        self.feedback.set_idle("rehearsal" if rehearsal else None)
        self.feedback.set_banner("ID IN USE ELSEWHERE" if now.duplicate else "** REHEARSAL **" if rehearsal else None)
        fault = None
        if self._watch_latch():
            fault = "latch"
        elif now.duplicate:
            fault = "identity"
        elif not self.capture.camera_ok:
            fault = "camera"
        elif disk_full or self.disk_readonly:
            fault = "disk"
        elif not self.has_data:
            fault = "tickets"
        elif not synced:
            fault = "clock"
        elif low:
            fault = "disk"
        elif self.link is not None and self.link.offline_for() > BROKER_FAULT_S:
            fault = "broker"
        self.feedback.set_fault(fault)
        self.fault = fault

    def _watch_latch(self) -> Optional[str]:
        """Latch a turnstile whose camera has been lost too long; notice a latch cleared by the doctor.
        Returns why the gate is out of order now, or None."""
        why = self.modes.latched()
        if self.turnstile is None:
            return why
        now = time.monotonic()
        lost_s = self.cfg.turnstile.camera_lost_s
        if self.capture.camera_ok:
            self.camera_lost_at = None
        elif self.camera_lost_at is None:
            self.camera_lost_at = now
        elif lost_s and now - self.camera_lost_at >= lost_s and not why:
            self.admission.door_fault(DoorFault(f"camera lost {lost_s:g} s"))
            why = self.modes.latched()
        if self.turnstile.latched and not why:
            self.turnstile.latch(False)   # `gate doctor --clear-latch` removed it
            log.warning("out-of-order latch cleared from outside")
            self.admission.report_state()
        return why

    def health(self) -> dict:
        """The health report (runs on the publisher's thread: reads only, through its own connections)."""
        ft = list(self.frame_times)
        fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 1 and ft[-1] > ft[0] else 0.0
        ms = list(self.decode_ms)
        mode = self.modes.snapshot()
        return {
            "gate": self.gate.id, "ts": now_ms(), "fps": round(fps, 1),
            "decode_ms_p50": round(percentile(ms, 0.5), 3), "decode_ms_p95": round(percentile(ms, 0.95), 3),
            "frames": self.processed, "dropped": self.capture.dropped, "verdicts": self.admission.verdicts,
            "outbox_depth": (self.link.outbox if self.link else self.outbox).depth(),
            "camera_ok": self.capture.camera_ok, "camera_error": self.capture.camera_error,
            "ticket_data_version": self.data_version, "cpu_temp": cpu_temperature(),
            "fault": self.fault, "free_passage": self.free_passage,
            "mode": mode.mode, "venue_mode": mode.venue, "out_of_order": mode.latched,
            "instance": self.parts.instance, "duplicate": mode.duplicate,
            "takeovers": self.link.identity.takeovers if self.link else 0,
            "disk_readonly": self.disk_readonly,
            "clock_synced": bool(self.clock_ok),
            "disk_free_mb": self.parts.disk.free_mb() if self.parts.disk else None,
            "disk_full": self.admission.disk_full, "unrecorded": self.admission.unrecorded,
            "rejected_codes": vars(self.resolver.rejects).copy(),
            "malformed_payloads": {**(self.link.drops.snapshot() if self.link else {}), **self.remote.drops},
            # other gates' admissions and exits this gate did not believe, by gate (gate/state/remote.py)
            "implausible": self.remote.implausible,
            # which signed list this gate runs, and the lists it ignored (unsigned, unknown key, replayed...)
            "ticket_lists": self.parts.updater.guard.report() if self.link else {},
        }

    def close(self) -> None:
        """Relay off first, then everything else; safe to call twice."""
        self.capture.stop()
        self.parts.close()
        self.capture.discard()


class Scanner(ScanLoop):
    """A gate built from its config by the composition root, ready to `run()`."""

    def __init__(self, cfg, source=None, *, stop: Optional[threading.Event] = None, **build):
        super().__init__(build_gate(cfg, source, **build), stop=stop)
