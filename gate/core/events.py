"""Typed events passed between stages, so camera, decode, decision, feedback
and network never import one another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:   # only a type hint here: the house never imports numpy
    import numpy as np

REASONS = (
    "ok", "reentry", "exit", "already_used", "unknown", "forged", "revoked", "blocked",
    "wrong_event", "wrong_gate", "not_yet_valid", "expired", "rules", "not_passed",
)
RESULTS = ("admitted", "exited", "rejected", "annulled")
# live: counted; test: a rehearsal scan, shown apart and never counted; info: a look-up, never recorded
MODES = ("live", "test", "info")


@dataclass
class Frame:
    """One grey frame: `y` is a 2-D uint8 view (its stride may exceed its width);
    `main`, when the camera has one, the same moment at a higher resolution
    (a view too, released with y)."""
    y: "np.ndarray"
    seq: int
    t_arrival: float        # time.monotonic() when the frame reached us
    ts_ms: int = 0          # wall clock, unix ms
    release: Callable[[], None] = lambda: None  # gives the buffer back to the camera
    main: Optional["np.ndarray"] = None


@dataclass(frozen=True)
class Code:
    """One barcode read from a frame. `raw` keeps the exact bytes."""
    format: str
    raw: bytes
    text: str


@dataclass
class Ticket:
    ticket_id: str
    event: str
    code: str = ""
    holder: str = ""
    seat: str = ""
    zone: str = ""
    valid_from: Optional[int] = None   # unix ms
    valid_until: Optional[int] = None
    status: str = "valid"              # valid | revoked | blocked (on hold at the box office)
    tags: tuple[str, ...] = ()
    note: str = ""
    patron: str = ""
    signed: bool = False


# A ticket as a flat row, in one column order for the store, the lists on the bus and the
# box office's files (tags joined by ";"). Written once, here.
TICKET_COLUMNS = ("ticket_id", "code", "event", "holder", "seat", "zone", "valid_from", "valid_until",
                  "status", "tags", "note", "patron")


def ticket_row(t: Ticket) -> tuple:
    """A Ticket as a row in TICKET_COLUMNS order."""
    return (t.ticket_id, t.code, t.event, t.holder, t.seat, t.zone, t.valid_from, t.valid_until,
            t.status, ";".join(t.tags), t.note, t.patron)


def ticket_from_row(row) -> Ticket:
    """A row in TICKET_COLUMNS order (NULLs allowed where SQLite stores them) as a Ticket."""
    tid, code, event, holder, seat, zone, vf, vu, status, tags, note, patron = row
    return Ticket(ticket_id=tid, code=code, event=event, holder=holder or "", seat=seat or "", zone=zone or "",
                  valid_from=vf, valid_until=vu, status=status or "valid",
                  tags=tuple(x for x in (tags or "").split(";") if x), note=note or "", patron=patron or "")


@dataclass
class History:
    """What this gate knows of a ticket's past use (own scans and synced ones)."""
    inside: bool = False
    first_ts: Optional[int] = None
    first_gate: str = ""
    exits: int = 0
    last_entry_ts: Optional[int] = None
    last_exit_ts: Optional[int] = None
    entries: tuple[int, ...] = ()      # recent admission times (unix ms), newest first


@dataclass(frozen=True)
class Verdict:
    """What the rules (gate/decide.py) said of one presented code; never changed afterwards."""
    result: str                        # admitted | exited | rejected | annulled
    reason: str                        # one of REASONS
    ticket: Optional[Ticket] = None
    ticket_ref: str = ""               # ticket id, or a hash for unknown codes
    detail: str = ""                   # human words, e.g. when/where first used

    @property
    def admitted(self) -> bool:
        return self.result == "admitted"


@dataclass(frozen=True)
class Welcome:
    """What a ticket's tags ask of the door (gate/hospitality.py). It travels beside the
    verdict, not in it: the rules never see it, and the door acts on it only for an admission."""
    attention: tuple[str, ...] = ()    # the tags that asked for attention (the scan event carries them)
    level: str = ""                    # the highest of their levels: notice | greet | assist
    greeting: str = ""                 # for the usher's display
    assist: bool = False               # a tag in [turnstile] assist_tags: a longer release


NO_WELCOME = Welcome()


@dataclass
class ScanEvent:
    """The MQTT scan event (docs/contract.md, v = 1)."""
    id: str
    gate: str
    seq: int
    ts: int
    event: str
    ticket: str
    dir: str
    result: str
    reason: str
    attention: list[str] = field(default_factory=list)
    mode: str = "live"                 # live | test (rehearsal) | info (a look-up): docs/contract.md
    clock: str = "ok"                  # ok | unsynced: the gate's clock was not synchronised (ts unreliable)
    v: int = 1
    instance: str = ""                 # the device that made it (gate/state/instance.py); "" = not said


# -- control messages to the scan loop (from the door, the link and the updater threads) --

@dataclass(frozen=True)
class Admitted:
    """An admission the turnstile is holding open, waiting for its passage."""
    event: ScanEvent
    verdict: Verdict
    welcome: Welcome     # what its tags asked: the annulment, if nobody passes, carries them too


@dataclass(frozen=True)
class NobodyPassed:
    """The turnstile released for an admission and nobody walked through."""
    admission: Admitted


@dataclass(frozen=True)
class ExitPassage:
    """The exit sensor saw someone leave."""
    ts_ms: int


@dataclass(frozen=True)
class FreePassage:
    """The free-passage input (fire alarm) changed."""
    active: bool


@dataclass(frozen=True)
class RemoteScan:
    """Another gate's scan event, heard on the bus (used-ticket sync)."""
    event: ScanEvent


@dataclass(frozen=True)
class TicketDataApplied:
    """A new ticket list is in the store."""
    version: int


@dataclass(frozen=True)
class VenueControl:
    """A venue control message heard on the bus (unverified: the loop checks its signature)."""
    payload: bytes


@dataclass(frozen=True)
class DoorFault:
    """The door contradicts the relay (a passage with no release, a door held open)."""
    why: str


@dataclass(frozen=True)
class IdentityClash:
    """Another device is using this gate's identity (seen by the link: a session taken over, a status or
    scan under our gate id from another instance)."""
    why: str


@dataclass(frozen=True)
class ModeButton:
    """A handheld's second button (or a long press of its trigger): look-up mode on or off."""
