"""The memory limits systemd puts on a gate unit, and whether they fit this machine.

On a Pi Zero 2 W (512 MB) a process that grows without bound is killed by the kernel's
OOM killer, which may pick the broker or the other service. Each unit therefore sets
`MemoryHigh=` (the kernel reclaims and throttles above it) and `MemoryMax=` (the unit,
and only it, is killed and restarted above it). `gate doctor` shows them: from the
running systemd when there is one, else from the unit files (drop-ins included), else
from the units this package ships.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
             "/usr/lib/systemd/system")
SHIPPED = Path(__file__).resolve().parent.parent.parent / "systemd"
KEYS = ("MemoryHigh", "MemoryMax")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$", re.I)
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "": 1}


def parse_size(text: str) -> Optional[int]:
    """systemd's sizes (`96M`, `1G`, bytes) to bytes; None for `infinity`, a percentage or nonsense."""
    m = SIZE_RE.match(text.strip())
    return int(float(m.group(1)) * UNITS[m.group(2).upper()]) if m else None


def from_text(text: str, found: dict) -> None:
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key in KEYS:
            found[key] = value.strip()


def from_files(unit: str, dirs=UNIT_DIRS) -> tuple[dict, str]:
    """(limits, where) from the first unit file found and its drop-ins; ({}, '') when not installed."""
    for d in dirs:
        path = Path(d) / unit
        try:
            text = path.read_text(errors="replace")[:65536]
        except OSError:
            continue
        found: dict = {}
        from_text(text, found)
        for drop in sorted(Path(f"{path}.d").glob("*.conf")):
            try:
                from_text(drop.read_text(errors="replace")[:65536], found)
            except OSError:
                continue
        return found, str(path)
    return {}, ""


def from_systemd(unit: str) -> dict:
    """What the running systemd applies (empty without one, or when the unit is not loaded)."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return {}
    try:
        r = subprocess.run(["systemctl", "show", "-p", ",".join(KEYS), unit], capture_output=True, text=True,
                           timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict = {}
    from_text(r.stdout, found)
    return found if r.returncode == 0 else {}   # bytes, or "infinity"


def machine_mb() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mb(v: Optional[str]) -> str:
    size = parse_size(v) if v else None
    return f"{size // (1 << 20)} MB" if size is not None else (v or "none")


def check(unit: str, dirs=UNIT_DIRS, ram: Optional[int] = None) -> tuple[bool, str]:
    """(ok, what to tell the operator) about `unit`'s memory limits (`ram` in MB: this machine's)."""
    ram = ram or machine_mb()
    here = f"; this machine has {ram} MB" if ram else ""
    live = from_systemd(unit) if dirs is UNIT_DIRS else {}
    limits, where = (live, "systemd") if live else from_files(unit, dirs)
    if not where:
        shipped, _ = from_files(unit, (str(SHIPPED),))
        said = " ".join(f"{k}={shipped[k]}" for k in KEYS if k in shipped) or "no limits"
        return True, f"{unit} not installed here; the unit shipped with gate sets {said}{here}"
    high, cap = limits.get("MemoryHigh"), limits.get("MemoryMax")
    cap_bytes = parse_size(cap) if cap else None
    shown = f"{unit}: MemoryHigh={_mb(high)}, MemoryMax={_mb(cap)} (from {where}){here}"
    if cap_bytes is None:
        return False, (f"{shown}: no MemoryMax, so on a Pi the kernel's OOM killer picks its own victim "
                       f"(the broker, the other service): set it as the shipped unit does ({SHIPPED.name}/{unit})")
    if ram and cap_bytes > ram * (1 << 20):
        return False, f"{shown}: MemoryMax is more than the machine has"
    return True, shown
