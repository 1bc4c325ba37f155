"""Home Assistant MQTT discovery for the house's sensors and the gates' connectivity.

Pure functions: each returns (config topic, config payload) pairs; the
service decides when to publish them.
"""

from __future__ import annotations

import re

from gate.bus import topics


def object_id(text: str) -> str:
    """Home Assistant object ids allow only [A-Za-z0-9_-]."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def device(venue: str) -> dict:
    return {"identifiers": [f"gate_house_{venue}"], "name": f"{venue} house count",
            "manufacturer": "gate", "model": "house service"}


def event_sensors(venue: str, ev: str) -> list[tuple[str, dict]]:
    """The `inside` and `admitted` sensors of one event."""
    oid = object_id(f"gate_{venue}_{ev}")
    out = []
    for what, topic, tmpl in (("inside", topics.house_inside(venue, ev), None),
                              ("admitted", topics.house(venue, ev), "{{ value_json.admitted }}")):
        cfg = {"name": f"{ev} {what}", "unique_id": f"{oid}_{what}", "state_topic": topic,
               "unit_of_measurement": "people", "state_class": "measurement", "device": device(venue)}
        if tmpl:
            cfg["value_template"] = tmpl
        out.append((topics.ha_config("sensor", f"{oid}_{what}"), cfg))
    return out


def gate_connectivity(venue: str, gate: str) -> tuple[str, dict]:
    """A binary sensor that follows a gate's retained status (and its last will)."""
    oid = object_id(f"gate_{venue}_{gate}_online")
    cfg = {"name": f"{gate} online", "unique_id": oid, "device_class": "connectivity",
           "state_topic": topics.status(venue, gate), "value_template": "{{ value_json.state }}",
           "payload_on": "online", "payload_off": "offline", "device": device(venue)}
    return topics.ha_config("binary_sensor", oid), cfg
