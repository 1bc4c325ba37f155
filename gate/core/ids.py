"""Ids that become MQTT topic levels: venue, gate and event (performance) ids. One rule each.

Every receiver on the bus checks ids with these (gate/bus/values.py, codec.py, the house), the topic
builders take their fixed levels from here (gate/bus/topics.py), and `gate config check` refuses any id
a receiver would drop, with the reason from here: a gate the bus cannot hear must not start at all.
"""

from __future__ import annotations

import re
from typing import TypeGuard

ID_MAX = 64        # venue and gate ids: a topic level and a broker user name
EVENT_MAX = 128    # event ids: pretix slugs and `<slug>-<subevent id>`
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,%d}" % ID_MAX)
# Also pretix's slugs, which may hold dots. Nothing else: no `+`, `#`, `/`, spaces or control
# characters. Empty = unknown (a rejected code); a configured event id is never empty.
EVENT_RE = re.compile(r"[A-Za-z0-9_.:-]{0,%d}" % EVENT_MAX)

# The fixed levels under gate/<venue>/ that are not gates ...
HOUSE = "house"        # gate/<venue>/house/...: the house's own topics
TICKETS = "tickets"    # gate/<venue>/tickets: the signed ticket list
CONTROL = "control"    # gate/<venue>/control: the signed venue control message
# ... the fixed levels under gate/<venue>/house/ that are not events ...
STATUS = "status"      # gate/<venue>/house/status: the house's status and last will
ALERTS = "alerts"      # gate/<venue>/house/alerts: the house's alerts
DOORS = "doors"        # gate/<venue>/house/doors: each door's problems (gate/house/doors.py)
ACTIVE = "active"      # gate/<venue>/house/active: which house publishes (gate/house/election.py)
# ... and the names other parties have on the bus.
BOXOFFICE = "boxoffice"   # the box office's broker user (`gate broker config`)
HOUSE_STANDBY = "house-standby"   # a standby house's broker user (`[house] standby = true`)
PRETIX = "pretix"         # the pseudo-gate under which the house publishes check-ins made in pretix

RESERVED_GATE_IDS = {
    HOUSE: "gate/<venue>/house/... are the house's own topics, and the house a broker user",
    TICKETS: "gate/<venue>/tickets is the ticket list's topic",
    CONTROL: "gate/<venue>/control is the venue control topic",
    BOXOFFICE: "it is the box office's broker user",
    HOUSE_STANDBY: "it is the standby house's broker user",
    PRETIX: "it is the house's name for check-ins made in pretix",
}
RESERVED_EVENTS = {
    STATUS: "gate/<venue>/house/status is the house's own status topic",
    ALERTS: "gate/<venue>/house/alerts is the house's alerts topic",
    DOORS: "gate/<venue>/house/doors is the house's topic of each door's problems",
    ACTIVE: "gate/<venue>/house/active says which house is active",
}


def is_id(text: object) -> TypeGuard[str]:
    """A venue or gate id as receivers accept it: 1-64 of [A-Za-z0-9_-]."""
    return type(text) is str and ID_RE.fullmatch(text) is not None


def is_event(text: object) -> TypeGuard[str]:
    """An event id as a scan event may carry it: empty (unknown) or topic-safe, and not reserved."""
    return type(text) is str and EVENT_RE.fullmatch(text) is not None and text not in RESERVED_EVENTS


def id_problem(text: str) -> str:
    """Why `text` is no venue or gate id ('' when it is one)."""
    if not text:
        return f"required: 1-{ID_MAX} letters, digits, '_' and '-'"
    if len(text) > ID_MAX:
        return f"at most {ID_MAX} characters (it is an MQTT topic level), got {len(text)}"
    if not is_id(text):
        return f"{text!r}: letters, digits, '_' and '-' only (it is an MQTT topic level)"
    return ""


def gate_id_problem(text: str) -> str:
    """Why `text` cannot be a gate's id ('' when it can): an id, and no other party's topic level or name."""
    problem = id_problem(text)
    if problem:
        return problem
    if text in RESERVED_GATE_IDS:
        return f"{text!r} is reserved: {RESERVED_GATE_IDS[text]}; choose another"
    return ""


def event_problem(text: str) -> str:
    """Why `text` cannot be a configured event id ('' when it can)."""
    if not text or len(text) > EVENT_MAX or not EVENT_RE.fullmatch(text):
        return (f"event id {text!r}: 1-{EVENT_MAX} letters, digits and _ . : - only "
                "(it becomes an MQTT topic level)")
    if text in RESERVED_EVENTS:
        return f"event id {text!r} is reserved: {RESERVED_EVENTS[text]} (an event id becomes an MQTT topic level)"
    return ""
