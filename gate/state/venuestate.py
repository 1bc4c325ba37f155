"""The newest venue control message a gate applied, kept in its storage directory.

A gate that forgot it on a restart (power cut, watchdog) would take any older,
genuinely signed message as news: a recorded `test` replayed on the control topic
would put that gate alone into rehearsal while the house and the dashboard say live.
So the mode, the message's signed time and who sent it are written (whole, synced,
then renamed into place) before the gate acts on them, and read back when it starts:
after any restart only a newer message changes anything, and the gate is in the
venue's mode from its first scan, before the broker is back.

    <storage dir>/venue-control     JSON {"mode": "live"|"test", "issued": unix s, "by": name}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE = "venue-control"
MAX_BYTES = 4096
MODES = ("live", "test")


def load(storage_dir) -> tuple[str, int, str]:
    """(mode, issued, by) of the newest control message applied here; ("live", 0, "") when none."""
    if storage_dir is None:
        return "live", 0, ""
    path = Path(storage_dir) / FILE
    try:
        with open(path, "rb") as f:
            st = json.loads(f.read(MAX_BYTES))
        mode, issued, by = st["mode"], st["issued"], st.get("by", "")
        if mode not in MODES or type(issued) is not int or not 0 <= issued < 2 ** 32 or type(by) is not str:
            raise ValueError
        return mode, issued, by[:255]
    except FileNotFoundError:
        return "live", 0, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # Unreadable: live, and the next genuine message whatever its time (as a gate that never heard one).
        log.error("%s unreadable: the venue counts as live until the next signed control message", path)
        return "live", 0, ""


def save(storage_dir, mode: str, issued: int, by: str) -> bool:
    """Record the control message about to be applied; False (logged) when the disk refused."""
    if storage_dir is None:
        return True
    path = Path(storage_dir) / FILE
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"mode": mode, "issued": issued, "by": by[:255]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)   # the rename itself must survive a power cut
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        log.error("cannot record the venue control message in %s (%s): after a restart this gate could take an "
                  "older one as news until the venue's next switch", path, exc)
        return False
