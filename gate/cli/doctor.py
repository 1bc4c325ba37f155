"""`gate doctor -c FILE`: is this gate ready for the doors to open?

Each check prints OK or FAIL with what to do about it; exit 1 on any failure.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from gate.cli.exits import FAILED, OK, BadUsage
from gate.state.diskspace import LOW_FREE_MB as MIN_FREE_MB  # the same line as the gate's own warning

STALE_DAYS = 7
# Written by scripts/install-pi on a machine without a Pi's camera or GPIO packages.
NO_HARDWARE = Path("/etc/systemd/system/gate-scan.service.d/no-hardware.conf")


def hardware_note(path: Path = NO_HARDWARE) -> str:
    """What gate-scan.service uses instead of hardware here, as the installer wrote it down."""
    try:
        text = path.read_text(errors="replace")[:4096]
    except OSError:
        return ""
    said = [line[2:].strip() for line in text.splitlines() if line.startswith("# no ")]
    return f"gate-scan.service runs without hardware ({path}): " + " ".join(said) if said else ""


def check_camera(cfg):
    from gate.camera import open_source
    src = open_source(cfg.camera.source, cfg.camera)
    try:
        src.start()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            f = src.read(0.5)
            if f is not None:
                h, w = f.y.shape
                f.release()
                return True, f"{src.name} delivering {w}x{h} frames"
            if src.finished:
                break
        return False, f"{src.name} started but delivered no frame in 5 s: check the cable and lighting"
    finally:
        src.close()


def check_gpio(cfg):
    import warnings

    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinFactoryFallback

    from gate.feedback import Feedback
    try:
        with warnings.catch_warnings():   # gpiozero warns of each pin library it passes over; the line below says it
            warnings.simplefilter("ignore", PinFactoryFallback)
            fb = Feedback.from_config(cfg.feedback)
    except BadPinFactory as exc:
        return False, f"no GPIO pin factory ({exc}): apt install python3-lgpio, and add the user to the 'gpio' group"
    except GPIOPinInUse as exc:
        return False, f"{exc}: another process holds the pin (is gate-scan.service running? stop it first)"
    names = ", ".join(sorted(fb.fitted)) or "nothing fitted"
    fb.close()
    return True, f"pins usable ({names})"


def check_broker(cfg):
    """Reaches the broker as the gate or house would (TCP, TLS with the venue CA, MQTT), and says why
    not in the words their logs use, WITHOUT logging in under the party's own user: a broker that gives
    each party one connection (`use_username_as_clientid`) would hand doctor the running gate's or
    house's session, taking it off the broker and (with a clean start) emptying its queued messages.
    So where [mqtt] names a user, doctor knocks anonymously with a client id of its own: a refusal of
    that knock still proves the broker is there and speaks MQTT; the party's own credentials are
    tried by the party itself (its log and status topic say whether it is connected)."""
    if not cfg.mqtt.enabled:
        return True, "MQTT disabled in config"
    import dataclasses
    import secrets

    from gate.bus.client import BusError, connect, explain_refusal, make_client, where
    knock = dataclasses.replace(cfg.mqtt, username="", password_file="") if cfg.mqtt.username else cfg.mqtt
    result = {}
    done = threading.Event()

    def on_connect(c, u, flags, rc, props):
        result["rc"] = rc
        done.set()

    def on_disconnect(c, u, flags, rc, props):
        result.setdefault("closed", rc)
        done.set()
    try:
        c = make_client(knock, f"doctor-{secrets.token_hex(4)}")
        c.on_connect, c.on_disconnect = on_connect, on_disconnect
        connect(c, knock, keepalive=10)
    except BusError as exc:
        return False, f"{where(cfg.mqtt)}: {exc}"
    c.loop_start()
    try:
        if not done.wait(5) or "rc" not in result:
            hint = "is it a TLS port? then set tls = true and ca_file" if not cfg.mqtt.tls else "check the broker's log"
            return False, f"{cfg.mqtt.host}:{cfg.mqtt.port} accepted TCP but never answered MQTT: {hint}"
        rc = result["rc"]
        if cfg.mqtt.username:
            if not rc.is_failure:
                return False, (f"{where(cfg.mqtt)} let doctor in without a user name: anyone on the network can "
                               "read and write the venue's topics; use the config `gate broker config` writes")
            if "authori" not in str(rc).lower() and "user name or password" not in str(rc).lower():
                return False, f"{where(cfg.mqtt)}: {explain_refusal(rc, cfg.mqtt)}"
            return True, (f"reached {where(cfg.mqtt)}; it asks for a login, as it should. {cfg.mqtt.username}'s "
                          "own login is not tried here (it would take over the running party's session): "
                          "its log and status topic say whether it is connected")
        if rc.is_failure:
            return False, f"{where(cfg.mqtt)}: {explain_refusal(rc, cfg.mqtt)}"
        return True, f"connected to {where(cfg.mqtt)}"
    finally:
        c.disconnect()
        c.loop_stop()


def check_clock(cfg):
    from gate.core.clock import clock_synchronised
    if clock_synchronised():
        return True, time.strftime("synchronised, %Y-%m-%d %H:%M:%S %Z")
    return False, ("clock not synchronised: ticket validity and the attendance log depend on it; "
                   "check `timedatectl` and that NTP (systemd-timesyncd) can reach a server")


def check_tickets(cfg):
    from gate.core.clock import now_ms
    from gate.core.storage import GateFiles
    from gate.resolve import load_verifiers
    from gate.state.tickets import TicketStore
    try:
        verifiers = load_verifiers(cfg)
    except (OSError, ValueError) as exc:
        return False, f"signing keys: {exc}"
    path = GateFiles.of(cfg.storage.dir, create=False).tickets
    if not path.exists() and not verifiers:
        return False, "no ticket data: run `gate tickets import -c CONFIG LIST` or publish a list from the box office"
    n, version = 0, 0
    if path.exists():
        st = TicketStore(path)
        n, version = st.count(), st.version
        st.close()
    if not n and not verifiers:
        return False, "the ticket store is empty and no signing keys are configured"
    age_days = (now_ms() - version) / 86_400_000 if version else None
    keys = f", {len(verifiers)} signature verifier(s)" if verifiers else ""
    if age_days is not None and age_days > STALE_DAYS:
        return False, f"{n} tickets but the data is {age_days:.0f} days old: import tonight's list"
    return True, f"{n} tickets (data version {version}){keys}"


def check_disk(cfg):
    from gate.state.diskspace import is_readonly, storage_readonly
    d = Path(cfg.storage.dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".doctor"
        probe.write_text("x")
        probe.unlink()
    except OSError as exc:
        if is_readonly(exc) or storage_readonly(d):
            return False, (f"{d} is on a read-only file system (the kernel remounts an SD card read-only after "
                           "I/O errors): the gate decides and shows, but records nothing and releases no "
                           "turnstile; check `dmesg`, then fsck or replace the card")
        return False, f"cannot write {d} ({exc.strerror}): check ownership (chown gate:gate) or StateDirectory"
    free = shutil.disk_usage(d).free // (1024 * 1024)
    if free < MIN_FREE_MB:
        return False, f"only {free} MB free under {d}: the outbox needs room while the broker is away"
    aside = sorted(p.name for p in d.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm")))
    note = (f"; damaged file(s) set aside and rebuilt: {', '.join(aside)} (keep them for recovery, "
            "delete them once done)") if aside else ""
    return True, f"{free} MB free under {d}{note}"


def check_latch(cfg):
    from gate.modes import GateMode
    why = GateMode(cfg.storage.dir).latched()
    if why:
        return False, f"out of order: {why}; fix the door, then clear it with a staff card or `gate doctor --clear-latch`"
    return True, "in service (no out-of-order latch)"


def check_identity(cfg):
    from gate.modes import GateMode
    from gate.state.instance import instance_id
    why = GateMode(cfg.storage.dir).duplicate()
    if why:
        return False, (f"{why}: this gate admits nobody (it shows what a ticket would get). Find the other device "
                       "with this gate id and password (a copy of this SD card?), switch it off or give it its own "
                       "gate id (gate broker config --gates), then clear with a staff card or `gate doctor "
                       "--clear-latch`")
    inst = instance_id(cfg.storage.dir, create=False)
    return True, f"this device is instance {inst}" if inst else "no instance id yet (made at the gate's first start)"


def check_memory(cfg):
    """The unit's MemoryHigh/MemoryMax (pretix-safe: gate/core/unitlimits.py)."""
    from gate.core.unitlimits import check
    return check("gate-scan.service" if cfg.gate is not None else "gate-house.service")


def main(args) -> int:
    """Run the checks for the gate or house that `args.config` describes (or clear the latch)."""
    from gate.config import load
    cfg = load(args.config)
    if getattr(args, "clear_latch", False):
        from gate.modes import clear_latch_file
        if cfg.gate is None:
            raise BadUsage("doctor --clear-latch needs a gate's config")
        cleared = clear_latch_file(cfg.storage.dir)
        print("out-of-order latch / identity fault cleared" if cleared else "no out-of-order latch was set")
        return OK
    checks = [("clock", check_clock), ("storage", check_disk), ("memory", check_memory)]
    if cfg.gate is not None:
        checks = [("camera", check_camera), ("gpio", check_gpio), ("broker", check_broker),
                  ("tickets", check_tickets), ("latch", check_latch), ("identity", check_identity)] + checks
    else:
        checks = [("broker", check_broker)] + checks
    failed = 0
    for name, fn in checks:
        try:
            ok, msg = fn(cfg)
        except Exception as exc:
            ok, msg = False, f"{type(exc).__name__}: {exc}"
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {name:<8} {msg}", flush=True)
    note = hardware_note()
    if note:
        print(f"NOTE {'hardware':<8} {note}")
    print("ready" if not failed else f"{failed} problem(s): fix them before the doors open")
    return FAILED if failed else OK
