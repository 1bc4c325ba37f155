"""sd_notify without libsystemd: a datagram to $NOTIFY_SOCKET.

READY=1 once the first frame is processed; WATCHDOG=1 from the frame loop
only, at half the interval systemd asked for, so a stuck camera or loop
trips the watchdog and systemd restarts the gate.
"""

from __future__ import annotations

import os
import socket
import time


def notify(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


class Watchdog:
    """Pings systemd's watchdog at half its interval, when pinged often enough."""

    def __init__(self):
        usec = os.environ.get("WATCHDOG_USEC")
        self.every = int(usec) / 2e6 if usec and usec.isdigit() else None
        self.last = 0.0

    def ping(self) -> None:
        if self.every is None:
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            notify("WATCHDOG=1")
