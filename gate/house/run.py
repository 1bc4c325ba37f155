"""`gate house`: the process (run the service under systemd, export the attendance log, talk to pretix)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from gate.core.errors import ConfigError, GateError
from gate.house import attendance
from gate.house.build import build_house

log = logging.getLogger(__name__)


def main(args) -> int:
    """Run `gate house` with its parsed arguments; returns the exit code."""
    from gate.config import load
    cfg = load(args.config)
    if cfg.house is None:
        raise ConfigError(args.config, "house", 0, "gate house needs a [house] section")
    if args.action == "set-aside":   # gates-word (gate/house/setaside.py)
        from gate.house.setaside import main as set_aside
        return set_aside(cfg, args.pretix_action, args.since, args.undo)
    if args.action == "pretix":
        if args.pretix_action not in ("sync", "status"):
            print(f"gate: house pretix {args.pretix_action}: sync or status", file=sys.stderr)
            return 2
        from gate.house.pretix_link import sync_once
        return sync_once(cfg, args.pretix_action, getattr(args, "accept_shrink", False))
    if args.action == "export":
        house = build_house(cfg, serve=False)   # the log and the counts only: beside a running house
        try:
            if args.out:
                with open(args.out, "w", newline="", encoding="utf-8") as f:
                    n = attendance.export(house, args.format, f)
            else:
                n = attendance.export(house, args.format, sys.stdout)
        finally:
            house.close()
        print(f"exported {n} rows (admissions, then no-shows)", file=sys.stderr)
        return 0
    from gate.config import warnings
    for w in warnings(cfg):
        log.warning("%s", w)
    house = build_house(cfg)
    try:
        house.start(settle_heap=True)   # this process is the house: its counts stay out of the collector's way
    except OSError as exc:
        house.close()
        raise GateError(f"house.listen: cannot listen on {cfg.house.listen} ({exc.strerror or exc}): "
                        "is another house service (or the demo) already running?") from exc
    log.info("dashboard on http://%s/", cfg.house.listen)
    from gate.core import systemd
    systemd.notify("READY=1")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    watchdog = systemd.Watchdog()
    workers = [w for w in (house.intake, house.publisher, house.standby) if w is not None]
    while not done.wait(1.0):
        if all(w.alive for w in workers):   # systemd restarts a house whose counting, publishing or election stopped
            watchdog.ping()
    house.close()
    return 0
