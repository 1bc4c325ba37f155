"""Room on the gate's storage: a reserve kept free for the outbox, a warning well before
the end, and a plain rule for when the disk is truly full.

The gate keeps a small reserve file beside its databases. When SQLite says the disk is
full (something else filled it: logs, a core dump), the reserve is deleted and the write
tried again, so scans keep being recorded for a while and the operator has time to act.
The rule when even that is used up: no durable record, no release. The verdict is still
decided and shown, but an admission that could not be written does not move the relay;
the LED shows the disk-full pattern and the log says so (the usher admits by hand).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

from gate.core.errors import GateError

log = logging.getLogger(__name__)

RESERVE_BYTES = 4 * 1024 * 1024   # about 20,000 scan events of outbox room
LOW_FREE_MB = 200                  # warned (health, doctor, dashboard, log) below this
SQLITE_FULL, SQLITE_IOERR = 13, 10


class DiskFull(GateError, OSError):
    """A record could not be written for want of room."""


def is_full(exc: BaseException) -> bool:
    """SQLite or the OS saying there is no room (a full disk also shows as an I/O error on WAL files)."""
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (28, 27):   # ENOSPC, EFBIG
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        return code in (SQLITE_FULL, SQLITE_IOERR) or "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return False


class DiskSpace:
    """The storage directory's free space and its reserve."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.reserve = self.dir / "outbox-reserve"
        self.full = False            # a record failed for want of room (cleared once one succeeds)
        self.was_low = False
        self.keep_reserve()

    def free_mb(self) -> int:
        try:
            return shutil.disk_usage(self.dir).free // (1024 * 1024)
        except OSError:
            return 0

    def low(self) -> bool:
        return self.free_mb() < LOW_FREE_MB

    def keep_reserve(self) -> None:
        """(Re)create the reserve when there is room for it and a margin."""
        if self.reserve.exists():
            return
        try:
            if shutil.disk_usage(self.dir).free < 4 * RESERVE_BYTES:
                return
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)   # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            log.warning("cannot keep an outbox reserve under %s (%s)", self.dir, exc.strerror)

    def release(self) -> bool:
        """Free the reserve for the outbox; False when there was none left."""
        if not self.reserve.exists():
            return False
        self.reserve.unlink(missing_ok=True)
        log.error("disk full under %s: released the %d MB outbox reserve so scans stay recorded; "
                  "free space now (what filled it? journalctl --disk-usage, du -xh /var | sort -h)",
                  self.dir, RESERVE_BYTES // (1024 * 1024))
        return True

    def status(self) -> dict:
        return {"disk_free_mb": self.free_mb(), "disk_full": self.full, "disk_reserve": self.reserve.exists()}
