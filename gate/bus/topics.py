"""Every MQTT topic string gate uses, in one place (docs/contract.md, contract v1).

| topic                                  | payload            | QoS / retain |
|----------------------------------------|--------------------|--------------|
| gate/<venue>/<gate>/scan               | msgpack scan event | 1 / no       |
| gate/<venue>/<gate>/status             | JSON, last will    | 1 / yes      |
| gate/<venue>/<gate>/health             | JSON               | 0 / no       |
| gate/<venue>/<gate>/resend             | JSON {"seqs": []}  | 1 / no       |
| gate/<venue>/tickets                   | msgpack ticket list| 1 / yes      |
| gate/<venue>/house/status              | JSON, last will    | 1 / yes      |
| gate/<venue>/control                   | signed GC1: text   | 1 / yes      |
| gate/<venue>/house/<event>             | JSON counts        | 1 / yes      |
| gate/<venue>/house/<event>/inside      | plain integer      | 1 / yes      |
| gate/<venue>/house/doors               | JSON per door      | 1 / yes      |
| gate/<venue>/house/alerts              | JSON alert         | 1 / no       |
| gate/<venue>/house/alerts/active       | JSON, the standing | 1 / yes      |
| gate/<venue>/house/active              | JSON claim         | 1 / yes      |
| homeassistant/...                      | discovery config   | 1 / yes      |

The fixed levels (house, tickets, control; status, alerts, active under house/) come from gate/core/ids.py,
which reserves them: no gate and no event can be named like one (`gate config check` refuses it).
"""

from gate.core.ids import ACTIVE, ALERTS, CONTROL, DOORS, HOUSE, STATUS, TICKETS

ROOT = "gate"


def _topic(venue: str, *levels: str) -> str:
    """gate/<venue>/<level>/...: every topic below is one of these."""
    return "/".join((ROOT, venue, *levels))


def _house_topic(venue: str, *levels: str) -> str:
    """gate/<venue>/house/<level>/...: the house's topics."""
    return _topic(venue, HOUSE, *levels)


def scan(venue: str, gate: str) -> str:
    return _topic(venue, gate, "scan")


def scans(venue: str) -> str:
    return _topic(venue, "+", "scan")


def venue_all(venue: str) -> str:
    return _topic(venue, "#")


def house_prefix(venue: str) -> str:
    return _house_topic(venue, "")   # "gate/<venue>/house/": the trailing slash makes it a prefix


def status(venue: str, gate: str) -> str:
    return _topic(venue, gate, "status")


def statuses(venue: str) -> str:
    return _topic(venue, "+", "status")


def health(venue: str, gate: str) -> str:
    return _topic(venue, gate, "health")


def healths(venue: str) -> str:
    return _topic(venue, "+", "health")


def resend(venue: str, gate: str) -> str:
    """House -> gate: JSON {"seqs": [...]} of scan events the house never received."""
    return _topic(venue, gate, "resend")


def tickets(venue: str) -> str:
    return _topic(venue, TICKETS)


def control(venue: str) -> str:
    """Box office -> gates and house: a signed venue control message (live / test), retained."""
    return _topic(venue, CONTROL)


def house(venue: str, event: str) -> str:
    return _house_topic(venue, event)


def house_status(venue: str) -> str:
    """The house's own status, with a last will: Home Assistant's availability for every entity."""
    return _house_topic(venue, STATUS)


def house_alerts(venue: str) -> str:
    """The house's alerts (docs/contract.md, Additions): not retained."""
    return _house_topic(venue, ALERTS)


def house_alerts_active(venue: str) -> str:
    """The alerts standing now and whether any needs a person (Home Assistant's problem sensor): retained."""
    return _house_topic(venue, ALERTS, "active")


def house_doors(venue: str) -> str:
    """House -> dashboards, Home Assistant: each door's problems (gate/house/doors.py)."""
    return _house_topic(venue, DOORS)


def house_active(venue: str) -> str:
    """The active house's claim (gate/house/election.py): retained, which house publishes."""
    return _house_topic(venue, ACTIVE)


def house_all(venue: str) -> str:
    return _house_topic(venue, "#")


def house_inside(venue: str, event: str) -> str:
    return _house_topic(venue, event, "inside")


def gate_of(topic: str) -> str:
    """The gate id in gate/<venue>/<gate>/<kind>, or '' when the shape is wrong."""
    parts = topic.split("/")
    return parts[2] if len(parts) == 4 and parts[0] == ROOT else ""


def ha_config(component: str, object_id: str) -> str:
    return f"homeassistant/{component}/{object_id}/config"
