"""The venue's mode at the house: live, or rehearsal (`test`).

A signed control message on `gate/<venue>/control` (gate/boxoffice/staff.py,
`gate venue live|test`) switches every gate and the house at once. Going live
clears what the rehearsal left: the house deletes the test scans from its log
and its rehearsal counts, each gate its rehearsal uses. The message is
retained, so a gate or house that was off hears the venue's current mode when
it connects; the last applied one's time is kept on disk, so a replayed old
message changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from gate.boxoffice.refusals import ControlRefusals
from gate.boxoffice.staff import StaffVerifier, read_control

log = logging.getLogger(__name__)


class VenueMode:
    def __init__(self, db, verifier: StaffVerifier):
        self.db = db
        self.verifier = verifier
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = db.execute("SELECT value FROM meta WHERE key='venue_mode'").fetchone()
        self.mode, issued = (str(row[0]).split(":", 1) if row else ["live", "0"])
        self.issued = int(issued)
        self.by = ""
        self.refused = 0
        self.refusals = ControlRefusals(log)

    def status(self) -> dict:
        """For the house's retained status: the venue mode and the signed time of the control message
        that set it, so `gate venue` can tell that the house applied its message."""
        return {"venue_mode": self.mode, "venue_issued": self.issued}

    def apply(self, payload: bytes) -> Optional[str]:
        """Apply a control message; returns the new mode, or None when it was refused."""
        if not payload:
            return None  # a cleared retained message
        now_s = int(time.time())
        code = read_control(payload, self.verifier, self.issued, now_s)
        if code is None:
            # Our own retained message after a restart is routine; a forgery is not (gate/boxoffice/refusals.py).
            self.refused += 1
            self.refusals.refused(payload, self.verifier, self.issued, now_s)
            return None
        with self.db:
            if code.action == "live":
                n = self.db.execute("DELETE FROM scans WHERE mode='test'").rowcount
                log.info("venue live (by %s): %d rehearsal scan(s) cleared", code.name, n)
            else:
                log.info("venue in rehearsal (by %s)", code.name)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('venue_mode', ?)", (f"{code.action}:{code.issued}",))
        self.mode, self.issued, self.by = code.action, code.issued, code.name
        return code.action
