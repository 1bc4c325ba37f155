"""Room on the gate's storage: a reserve kept free for the outbox, a warning well before
the end, and a plain rule for when the disk is truly full.

The gate keeps a small reserve file beside its databases. When SQLite says the disk is
full (something else filled it: logs, a core dump), the reserve is deleted and the write
tried again, so scans keep being recorded for a while and the operator has time to act.
The rule when even that is used up: no durable record, no release. The verdict is still
decided and shown, but an admission that could not be written does not move the relay;
the LED shows the disk-full pattern and the log says so (the usher admits by hand).

Storage that is read-only (an SD card the kernel remounted read-only after I/O errors, at
start or while running) follows the same rule: the gate starts, reads its tickets and
their record of use, decides and shows, records nothing and releases nothing, and says
why (log, health, display, `gate doctor`). There is no reserve to keep or release then.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from gate.core.errors import GateError

log = logging.getLogger(__name__)

RESERVE_BYTES = 4 * 1024 * 1024   # about 20,000 scan events of outbox room
LOW_FREE_MB = 200                  # warned (health, doctor, dashboard, log) below this
SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY = 13, 10, 8


class DiskFull(GateError, OSError):
    """A record could not be written for want of room."""


class StorageReadOnly(DiskFull):
    """A record could not be written: the storage is read-only."""


def is_readonly(exc: BaseException) -> bool:
    """The OS or SQLite refusing a write because the storage (or the file) is read-only."""
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.EROFS:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        return code == SQLITE_READONLY or "readonly database" in str(exc)
    return False


def storage_readonly(directory) -> bool:
    """The file system holding `directory` (or, before it exists, its nearest parent) is mounted read-only."""
    p = Path(directory)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
        self.readonly = storage_readonly(self.dir)
        self.keep_reserve()

    def free_mb(self) -> int:
        try:
            return shutil.disk_usage(self.dir).free // (1024 * 1024)
        except OSError:
            return 0

    def low(self) -> bool:
        return self.free_mb() < LOW_FREE_MB

    def check_readonly(self) -> bool:
        """Look again whether the storage is read-only (it can become so while the gate runs); returns it."""
        self.readonly = storage_readonly(self.dir)
        return self.readonly

    def keep_reserve(self) -> None:
        """(Re)create the reserve when there is room for it and a margin (never on read-only storage)."""
        if self.readonly or self.reserve.exists():
            return
        try:
            if shutil.disk_usage(self.dir).free < 4 * RESERVE_BYTES:
                return
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)   # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):   # the disk that refused the write may refuse this too
                self.reserve.unlink(missing_ok=True)
            if is_readonly(exc):
                self.readonly = True
                return   # said where it matters: at start (gate/build.py) and on each refused record
            log.warning("cannot keep an outbox reserve under %s (%s)", self.dir, exc.strerror)

    def release(self) -> bool:
        """Free the reserve for the outbox; False when there was none left."""
        if not self.reserve.exists():
            return False
        try:
            self.reserve.unlink(missing_ok=True)
        except OSError as exc:   # read-only now: nothing can be freed, and nothing written either
            log.error("cannot release the outbox reserve under %s (%s)", self.dir, exc.strerror)
            return False
        log.error("disk full under %s: released the %d MB outbox reserve so scans stay recorded; "
                  "free space now (what filled it? journalctl --disk-usage, du -xh /var | sort -h)",
                  self.dir, RESERVE_BYTES // (1024 * 1024))
        return True

    def status(self) -> dict:
        return {"disk_free_mb": self.free_mb(), "disk_full": self.full, "disk_reserve": self.reserve.exists(),
                "disk_readonly": self.readonly}
