"""Home Assistant MQTT discovery for the house's sensors and the gates' connectivity.

Pure functions: each returns (config topic, config payload) pairs; the
publisher (gate/house/publisher.py) decides when to publish them. By Home Assistant's rules for discovery:
- every entity's `availability` is the house's own status topic (retained, with a
  last will `offline`), so a dead house shows "unavailable", not stale counts;
- an `origin` block names the software that announced it;
- running totals (`admitted`, `rejected`) are `total_increasing`, `inside` is a `measurement`;
- only the venue's configured events and tonight's are announced (`wanted_events`);
  an entity that should no longer exist is removed with an empty retained config;
- every config names its entity id twice: `object_id` (what Home Assistant before 2025.10
  reads) and `default_entity_id` (domain-prefixed, what 2025.10 and later read; 2026.4 ignores
  `object_id`), spelled so both give the same entity id;
- a gate's connectivity follows the gate's own retained status and last will, not the
  house's: a dead house must not make every door look disconnected;
- the house's alerts are an `event` entity (one `event_type` per alert kind, the rest as
  attributes) and a `problem` binary sensor (on while a `warn` or `critical` alert stands).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable, Optional

from gate import __version__
from gate.bus import topics

TONIGHT_MS = 12 * 3600 * 1000   # an event admitted to within this long counts as tonight's
SENSORS = (   # what, state_class, where the value comes from
    ("inside", "measurement", None),
    ("admitted", "total_increasing", "{{ value_json.admitted }}"),
    ("rejected", "total_increasing", "{{ value_json.rejected }}"),
)


def object_id(text: str) -> str:
    """Home Assistant object ids allow only [A-Za-z0-9_-]. Mapping other characters to `_` could make
    two performances (`a.b`, `a_b`) one sensor, so a changed id gets a short hash of the original."""
    mapped = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    if mapped == text:
        return text
    return f"{mapped}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def entity_ids(component: str, oid: str) -> dict:
    """`unique_id`, `object_id` and `default_entity_id` of one entity: old and new Home Assistant
    derive the same entity id (lower case, runs of anything else as one `_`, as its slugify does)."""
    slug = re.sub(r"[^a-z0-9]+", "_", oid.lower()).strip("_")
    return {"unique_id": oid, "object_id": oid, "default_entity_id": f"{component}.{slug}"}


def device(venue: str) -> dict:
    return {"identifiers": [f"gate_house_{venue}"], "name": f"{venue} house count",
            "manufacturer": "gate", "model": "house service", "sw_version": __version__}


def origin() -> dict:
    return {"name": "gate", "sw_version": __version__}


def availability(venue: str) -> list[dict]:
    """The house's status topic: `online` while it runs, its last will `offline` when it dies."""
    return [{"topic": topics.house_status(venue), "value_template": "{{ value_json.state }}",
             "payload_available": "online", "payload_not_available": "offline"}]


def _prefix(venue: str) -> str:
    return object_id(f"gate_{venue}_")


def event_sensors(venue: str, ev: str) -> list[tuple[str, dict]]:
    """The `inside`, `admitted` and `rejected` sensors of one event."""
    oid = object_id(f"gate_{venue}_{ev}")
    out = []
    for what, state_class, tmpl in SENSORS:
        cfg = {"name": f"{ev} {what}", **entity_ids("sensor", f"{oid}_{what}"),
               "state_topic": topics.house_inside(venue, ev) if tmpl is None else topics.house(venue, ev),
               "unit_of_measurement": "people", "state_class": state_class, "device": device(venue),
               "origin": origin(), "availability": availability(venue), "availability_mode": "all"}
        if tmpl:
            cfg["value_template"] = tmpl
        out.append((topics.ha_config("sensor", f"{oid}_{what}"), cfg))
    return out


def removal(venue: str, ev: str) -> list[tuple[str, str]]:
    """Empty retained configs: Home Assistant deletes the event's entities."""
    return [(topic, "") for topic, _ in event_sensors(venue, ev)]


def gate_connectivity(venue: str, gate: str) -> tuple[str, dict]:
    """A binary sensor that follows a gate's retained status (and its last will). No availability:
    the gate's own status decides, so the doors keep their state when the house is down."""
    oid = object_id(f"gate_{venue}_{gate}_online")
    cfg = {"name": f"{gate} online", **entity_ids("binary_sensor", oid), "device_class": "connectivity",
           "state_topic": topics.status(venue, gate), "value_template": "{{ value_json.state }}",
           "payload_on": "online", "payload_off": "offline", "device": device(venue), "origin": origin()}
    return topics.ha_config("binary_sensor", oid), cfg


def gate_of_connectivity(venue: str, topic: str) -> Optional[str]:
    """The gate of one of our retained connectivity configs (None for anyone else's)."""
    parts = topic.split("/")
    prefix = _prefix(venue)
    if len(parts) != 4 or parts[:2] != ["homeassistant", "binary_sensor"] or parts[3] != "config":
        return None
    oid = parts[2]
    if not (oid.startswith(prefix) and oid.endswith("_online")):
        return None
    return oid[len(prefix):-len("_online")] or None


ALERT_KINDS = ("arrival", "capacity", "flow", "door", "sync", "security")


def house_alerts(venue: str) -> list[tuple[str, dict]]:
    """The house's alerts as an `event` entity, and a `problem` binary sensor over the standing ones."""
    eid = object_id(f"gate_{venue}_alerts")
    event = {"name": "alerts", **entity_ids("event", eid), "state_topic": topics.house_alerts(venue),
             "event_types": list(ALERT_KINDS),
             # the alert's `kind` is Home Assistant's event_type; level, text, door and performance its attributes
             "value_template": "{{ {'event_type': value_json.kind, 'level': value_json.level, 'text': value_json.text,"
                               " 'event': value_json.event, 'gate': value_json.gate, 'tags': value_json.tags}"
                               " | to_json }}",
             "device": device(venue), "origin": origin(), "availability": availability(venue)}
    pid = object_id(f"gate_{venue}_problem")
    problem = {"name": "problem", **entity_ids("binary_sensor", pid), "device_class": "problem",
               "state_topic": topics.house_alerts_active(venue),
               "value_template": "{{ 'ON' if value_json.problem else 'OFF' }}", "payload_on": "ON",
               "payload_off": "OFF", "json_attributes_topic": topics.house_alerts_active(venue),
               "device": device(venue), "origin": origin(), "availability": availability(venue)}
    return [(topics.ha_config("event", eid), event), (topics.ha_config("binary_sensor", pid), problem)]


def gate_problem(venue: str, gate: str) -> tuple[str, dict]:
    """A `problem` binary sensor per gate from the house's doors topic (gate/house/doors.py): on for two
    devices under one gate id, a door whose mode differs from the venue's, or a door out of order; the
    flags themselves are its attributes."""
    oid = object_id(f"gate_{venue}_{gate}_problem")
    pick = "value_json.get(%s, {})" % json.dumps(gate)
    cfg = {"name": f"{gate} problem", **entity_ids("binary_sensor", oid), "device_class": "problem",
           "state_topic": topics.house_doors(venue),
           "value_template": "{{ 'ON' if %s.get('problem') else 'OFF' }}" % pick,
           "json_attributes_topic": topics.house_doors(venue),
           "json_attributes_template": "{{ %s | tojson }}" % pick,
           "payload_on": "ON", "payload_off": "OFF", "device": device(venue),
           "origin": origin(), "availability": availability(venue)}
    return topics.ha_config("binary_sensor", oid), cfg


def wanted_events(configured: Iterable[str], last_admission: dict, now_ms: int) -> set[str]:
    """The events that deserve entities: configured ones, and those admitted to tonight.

    A rejected scan of yesterday's ticket names yesterday's event: that alone never
    creates a sensor."""
    return {ev for ev in configured if ev} | {ev for ev, ts in last_admission.items()
                                              if ev and now_ms - ts < TONIGHT_MS}


def announced_event(venue: str, topic: str) -> Optional[str]:
    """The event of one of our retained sensor configs (None for anyone else's)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "homeassistant" or parts[1] != "sensor" or parts[3] != "config":
        return None
    oid, prefix = parts[2], _prefix(venue)
    if not oid.startswith(prefix):
        return None
    for what, _, _ in SENSORS:
        if oid.endswith("_" + what):
            return oid[len(prefix):-len(what) - 1] or None
    return None
