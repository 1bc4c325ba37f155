"""Which device this is: a gate's instance id, announced beside its gate id.

A gate id and its broker password live on the SD card, so a cloned card makes two
devices with one identity. The broker lets only one of them hold the id's session at a
time, and each would take the other's scans for its own echo; the instance id tells them
(and the house) apart. It is made of two parts:

- a random salt, made at the first start and kept in the storage directory
  (`<storage dir>/instance`), so a re-imaged card on the same Pi is a new device;
- this machine's hardware serial (the Pi's CPU serial, else the network cards' MAC
  addresses), so a card cloned after its first start still gives a different id on the
  other Pi: the salt was cloned with it, the hardware was not.

    instance = first 12 hex digits of SHA-256(salt, 0x00, hardware serial)

On storage that cannot be written (read-only) the salt is empty and the id comes from the
hardware alone: still the same on every restart of this device, which matters, because a
device whose id changed on a restart would look like a second device.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

FILE = "instance"
SALT_RE = re.compile(r"[0-9a-f]{32}")
ID_HEX = 12
SERIAL_FILES = ("/sys/firmware/devicetree/base/serial-number",)
NET = Path("/sys/class/net")


def hardware_serial() -> str:
    """What tells this machine from another with a copy of its card ('' when nothing does)."""
    for path in SERIAL_FILES:
        try:
            text = Path(path).read_bytes()[:64].strip(b"\0\n ").decode("ascii", "replace")
        except OSError:
            continue
        if text.strip("0"):
            return text
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Serial") and ":" in line and line.split(":", 1)[1].strip().strip("0"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    macs = []
    try:
        for iface in sorted(NET.iterdir()):
            if not (iface / "device").exists():   # physical cards only: not lo, bridges, veths
                continue
            mac = (iface / "address").read_text(encoding="ascii", errors="replace").strip()
            if mac and mac.strip("0:"):
                macs.append(mac)
    except OSError:
        pass
    return ",".join(macs)


def _salt(storage_dir, create: bool = True) -> str:
    """The salt kept in the storage directory, made (written whole, then renamed) if missing."""
    path = Path(storage_dir) / FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if SALT_RE.fullmatch(text):
            return text
        log.warning("%s is not an instance salt: making a new one (this device gets a new instance id)", path)
    except FileNotFoundError:
        if not create:
            return ""
    except OSError as exc:
        log.warning("cannot read %s (%s): the instance id comes from the hardware alone", path, exc.strerror)
        return ""
    salt = secrets.token_hex(16)
    tmp = path.with_name(FILE + ".tmp")
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(salt + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot keep an instance salt in %s (%s): the instance id comes from the hardware alone",
                    path, exc.strerror)
        return ""
    return salt


def instance_id(storage_dir, hardware: str | None = None, create: bool = True) -> str:
    """This device's instance id (ID_HEX hex digits), the same on every start of it; '' with create=False
    when the gate never kept a salt here (it has not run yet)."""
    salt = _salt(storage_dir, create)
    if not salt and not create:
        return ""
    hw = hardware_serial() if hardware is None else hardware
    if not salt and not hw:
        # Neither a kept salt nor hardware to go by (a container on read-only storage): this start only.
        log.warning("no instance salt and no hardware serial: the instance id is new at every start")
        salt = secrets.token_hex(16)
    return hashlib.sha256(f"{salt}\0{hw}".encode()).hexdigest()[:ID_HEX]
