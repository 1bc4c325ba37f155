"""What staff cards and venue control messages may do at a gate, and when.

The promise (docs/contract.md, "Signed codes are bound to their purpose"): a card or a
control message never makes a ticket that was used live enter again during a live
show. So:

- a `test` card (rehearsal) works only while the venue is in rehearsal (`gate venue
  test`). Shown at a door while the venue is live it is refused, visibly (the
  display says why, the LED shows `rules`) and in the log: a photographed rehearsal
  card cannot turn a live door into an uncounted one;
- when the venue goes live, a gate a `test` card switched returns to its
  configured mode, so no door stays in rehearsal into the show;
- in rehearsal, a ticket already used live is judged by its live record: rehearsal
  never lets it in again;
- `entry`, `exit`, `info` and `clear` cards work at any time (they are how the door
  team runs a door during the show); each switch is on the gate's status topic and
  the dashboard's door list. Every card expires and can be revoked
  (gate/boxoffice/staff.py, gate/resolve.py).

A control message is applied only when it is newer than the newest one this gate
ever applied, which is kept on disk before it takes effect (gate/state/venuestate.py).
"""

from __future__ import annotations

import logging
from typing import Optional

from gate.boxoffice.refusals import ControlRefusals
from gate.boxoffice.staff import StaffCode, StaffVerifier, read_control
from gate.core.events import History
from gate.state import venuestate

log = logging.getLogger(__name__)
REFUSALS = ControlRefusals(log)   # one gate per process: the venue control messages it did not apply


def card_refusal(card: StaffCode, modes) -> Optional[str]:
    """Why this gate will not obey a verified, unrevoked card now (None: it will)."""
    if card.action == "test" and modes.venue != "test":
        return "rehearsal cards work only while the venue rehearses (gate venue test)"
    return None


def refused(card: StaffCode, modes, feedback) -> bool:
    """Refuse a card this gate must not obey now: shown at the door and logged. True when refused."""
    why = card_refusal(card, modes)
    if why is None:
        return False
    log.warning("staff card %s (%s, %s) refused: %s", card.card_id, card.name, card.action, why)
    feedback.show("rules", "", (f"STAFF {card.name}", f"{card.action.upper()} REFUSED", "VENUE IS LIVE"))
    return True


def history(store, ticket_id: str, modes) -> History:
    """The record a decision at this gate reads: the live one, or in rehearsal the rehearsal one, unless
    the ticket was used live (then the live record decides: rehearsal never lets it in again).
    A look-up (info) sees the live record."""
    live = store.history(ticket_id, "live")
    if modes.event_mode != "test" or live.first_ts is not None:
        return live
    return store.history(ticket_id, "test")


def venue_control(payload: bytes, verifier: StaffVerifier, modes, now_s: int) -> Optional[StaffCode]:
    """Apply a venue control message from the bus to `modes` if it is genuine and newer than any this
    gate applied (recorded on disk first); returns it, or None when it changes nothing (logged)."""
    code = read_control(payload, verifier, modes.venue_issued, now_s)
    if code is None:
        # The retained one again (every reconnect) is routine, an older genuine one stale: DEBUG, INFO.
        # A forgery is not: WARNING with its reason and count (gate/boxoffice/refusals.py).
        REFUSALS.refused(payload, verifier, modes.venue_issued, now_s)
        return None
    venuestate.save(modes.storage_dir, code.action, code.issued, code.name)
    modes.venue, modes.venue_issued = code.action, code.issued
    if code.action == "live" and modes.mode == "test":
        modes.switch(modes.configured, by="venue live")
    return code
