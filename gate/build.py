"""The composition root: one place reads a gate's whole config and builds every part.

Each `init_*` builds one part from its own config section and hands it only
what it needs (Frigate's `FrigateApp` pattern). The loop (gate/scanner.py)
receives the built parts and wires nothing: which part takes each control
message the parts send it is said here too (`control_handlers`). A build that
fails part-way closes what it already opened, relay first.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from gate.admission import Admission, OnVerdict
from gate.core.clock import now_ms
from gate.core.events import (
    DoorFault,
    ExitPassage,
    FreePassage,
    IdentityClash,
    ModeButton,
    NobodyPassed,
    RemoteScan,
    TicketDataApplied,
    VenueControl,
)
from gate.core.storage import GateFiles
from gate.core.teardown import close_in_order
from gate.decide import GateRules
from gate.decode import Debouncer, Decoder
from gate.feedback import Feedback
from gate.modes import GateMode
from gate.resolve import Resolver
from gate.state.diskspace import DiskFull, DiskSpace, is_full, is_readonly
from gate.state.instance import instance_id
from gate.state.outbox import Outbox
from gate.state.remote import RemoteScans
from gate.state.tickets import TicketStore

log = logging.getLogger(__name__)


@dataclass
class GateParts:
    """Everything one gate is made of, built and ready; `close()` undoes the build."""
    cfg: Any
    files: Optional[GateFiles] = None
    control: "queue.SimpleQueue" = field(default_factory=queue.SimpleQueue)
    source: Any = None
    decoder: Optional[Decoder] = None
    debounce: Optional[Debouncer] = None
    rules: Optional[GateRules] = None
    store: Optional[TicketStore] = None
    resolver: Optional[Resolver] = None
    outbox: Optional[Outbox] = None
    feedback: Optional[Feedback] = None
    turnstile: Any = None
    trigger: Any = None
    rate: Any = None                 # a handheld's ScanRate
    mode_button: Any = None          # a handheld's second button (look-up mode)
    modes: Optional[GateMode] = None
    link: Any = None
    updater: Any = None
    admission: Optional[Admission] = None   # the owner of every presented code
    remote: Optional[RemoteScans] = None     # other gates' scans, on their way into the history
    disk: Any = None                 # DiskSpace: the storage's free space and outbox reserve
    instance: str = ""               # this device, beside the gate id (gate/state/instance.py)
    _closed: bool = False

    def close(self) -> None:
        """Relay off first (Feedback owns it), then everything else; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        steps = [("feedback", lambda p: p.close()), ("turnstile", lambda p: p.close()),
                 ("trigger", lambda p: p.close()), ("mode_button", lambda p: p.close()),
                 ("source", lambda p: p.close()),
                 ("link", lambda p: p.close()), ("updater", lambda p: p.close()),
                 ("outbox", lambda p: p.close()), ("store", lambda p: p.close())]
        close_in_order(self, steps, log)


def control_handlers(parts: GateParts, *, free_passage: Callable[[FreePassage], object],
                     data_applied: Callable[[TicketDataApplied], object]) -> dict[type, Callable[[Any], object]]:
    """Who takes each control message the parts put on `parts.control`: the admission, the other gates'
    scans, and the loop itself for the two it keeps (`free_passage`, `data_applied`)."""
    admission, remote = parts.admission, parts.remote
    assert admission is not None and remote is not None, "GateParts not built by build_gate()"
    return {
        NobodyPassed: admission.nobody_passed, ExitPassage: admission.exit_passage,
        RemoteScan: remote.offer, FreePassage: free_passage,
        TicketDataApplied: data_applied, DoorFault: admission.door_fault,
        VenueControl: admission.venue_control, ModeButton: admission.mode_button,
        IdentityClash: admission.identity_clash}


def init_display(cfg):
    if cfg.feedback.display == "none":
        return None
    from gate.door.display import make_display
    return make_display(cfg.feedback.display)


def init_feedback(cfg, pin_factory) -> Feedback:
    return Feedback.from_config(cfg.feedback, pin_factory, init_display(cfg))


def init_door(parts: GateParts, pin_factory) -> None:
    cfg, control, feedback = parts.cfg, parts.control, parts.feedback
    assert feedback is not None, "the feedback is built before the door"
    if cfg.gate.profile == "turnstile":
        from gate.door.turnstile import Turnstile
        parts.turnstile = Turnstile(cfg.turnstile, feedback.release, pin_factory=pin_factory,
                                    on_annul=lambda adm: control.put(NobodyPassed(adm)),
                                    on_exit_passage=lambda: control.put(ExitPassage(now_ms())),
                                    on_free_passage=lambda on: control.put(FreePassage(on)),
                                    on_fault=lambda why: control.put(DoorFault(why)))
    else:
        from gate.door.turnstile import ScanRate, Trigger
        rate = parts.rate = ScanRate(parts.source, cfg.camera.fps, cfg.camera.idle_fps)
        # Full rate at once on a press (from the pin thread), not one idle frame later.

        def pressed(on: bool) -> None:
            if on:
                rate.set(True)
        parts.trigger = Trigger(cfg.handheld.trigger_pin, cfg.handheld.linger_s, pin_factory=pin_factory,
                                on_change=pressed, long_press_s=cfg.handheld.long_press_s,
                                on_long_press=lambda: control.put(ModeButton()))
        if cfg.handheld.mode_pin is not None:
            from gpiozero import Button
            parts.mode_button = Button(cfg.handheld.mode_pin, pull_up=True, pin_factory=pin_factory)
            parts.mode_button.when_pressed = lambda *_: control.put(ModeButton())


def init_resolver(cfg, store: TicketStore, verifiers) -> Resolver:
    if verifiers is None:
        from gate.resolve import load_verifiers
        verifiers = load_verifiers(cfg)
    return Resolver(store, verifiers, cfg.decode.max_payload)


def init_link(parts: GateParts) -> None:
    """The MQTT side and the ticket-list updater: both talk to the loop through `control`."""
    from gate.link import GateLink
    from gate.state.updater import ListGuard, TicketUpdater
    cfg, control, files = parts.cfg, parts.control, parts.files
    assert files is not None, "the storage is named before the link is built"
    # A list is applied only when signed by one of [signing] list_keys, for this venue.
    parts.updater = TicketUpdater(files.tickets, on_applied=lambda v: control.put(TicketDataApplied(v)),
                                  guard=ListGuard.from_config(cfg))
    parts.link = GateLink(cfg, files.outbox, profile=cfg.gate.profile,
                          on_remote_scan=lambda e: control.put(RemoteScan(e)), on_tickets=parts.updater.offer,
                          on_control=lambda payload: control.put(VenueControl(payload)), instance=parts.instance,
                          on_clash=lambda why: control.put(IdentityClash(why)), readonly=parts.disk.readonly)


def open_files(storage_dir) -> GateFiles:
    """The gate's state directory, made if missing (on read-only storage it may not be: then it reads empty)."""
    try:
        return GateFiles.of(storage_dir)
    except OSError as exc:
        if not is_readonly(exc):
            raise
        return GateFiles.of(storage_dir, create=False)


def open_on_full_disk(opener, disk: DiskSpace):
    """Open a store; on a full disk, release the reserve and try again (a gate must come up and scan)."""
    try:
        return opener()
    except sqlite3.OperationalError as exc:
        if not is_full(exc):
            raise
        log.error("starting on a full disk under %s (%s)", disk.dir, exc)
        if not disk.release():
            raise DiskFull(f"no room under {disk.dir} to open the gate's databases ({exc}): free space "
                           "(journalctl --vacuum-size=50M; du -xh /var | sort -h)") from None
        return opener()


def build_gate(cfg, source=None, *, pin_factory=None, feedback: Optional[Feedback] = None, connect: bool = True,
               verifiers=None, on_verdict: Optional[OnVerdict] = None) -> GateParts:
    """Build every part of the gate that `cfg` describes (the camera from config unless given).

    `on_verdict(verdict, welcome, event)` is called after each verdict is on disk."""
    parts = GateParts(cfg)
    try:
        parts.files = open_files(cfg.storage.dir)
        if source is None:
            from gate.sources.readers import is_reader, open_reader
            if is_reader(cfg.camera.source):   # a USB or serial scanner: codes, not frames
                source = open_reader(cfg.camera.source, cfg.reader, cfg.decode.max_payload)
            else:
                from gate.camera import open_source
                source = open_source(cfg.camera.source, cfg.camera)
        parts.source = source
        parts.feedback = feedback or init_feedback(cfg, pin_factory)
        parts.disk = DiskSpace(parts.files.dir)
        ro = parts.disk.readonly
        if ro:
            log.error("STORAGE READ-ONLY: %s is on a read-only file system (an SD card the kernel remounted "
                      "read-only after I/O errors?): this gate decides and shows from the tickets it has, records "
                      "nothing and releases no turnstile; check dmesg, then fsck or replace the card", parts.files.dir)
        parts.instance = instance_id(parts.files.dir)
        parts.store = open_on_full_disk(lambda: TicketStore(parts.files.tickets, readonly=ro), parts.disk)
        parts.outbox = open_on_full_disk(lambda: Outbox(parts.files.outbox, readonly=ro), parts.disk)
        parts.outbox.on_full = parts.disk.release
        parts.resolver = init_resolver(cfg, parts.store, verifiers)
        parts.decoder = Decoder(cfg.decode.symbologies, cfg.decode.engine, cfg.decode.full_every)
        parts.debounce = Debouncer(cfg.decode.debounce_s)
        parts.rules = GateRules.from_config(cfg.gate)
        init_door(parts, pin_factory)
        if connect and cfg.mqtt.enabled:
            init_link(parts)
        parts.modes = GateMode(parts.files.dir, cfg.gate.direction)
        parts.remote = RemoteScans(parts.store)
        parts.admission = Admission(cfg.gate.id, resolver=parts.resolver, rules=parts.rules, store=parts.store,
                                    outbox=parts.outbox, feedback=parts.feedback, hospitality=cfg.hospitality.tags,
                                    turnstile=parts.turnstile, trigger=parts.trigger, on_verdict=on_verdict,
                                    modes=parts.modes, assist_tags=cfg.turnstile.assist_tags,
                                    report=parts.link.report if parts.link is not None else None,
                                    instance=parts.instance)
        if parts.turnstile is not None and parts.modes.latched():
            parts.turnstile.latch(True)   # still out of order from before the restart
    except BaseException:
        parts.close()
        raise
    return parts
