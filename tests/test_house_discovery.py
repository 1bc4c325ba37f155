"""Dashboards by the book: Home Assistant discovery, the house's own status and last will,
wills that order correctly, and rejections that name no event counted apart."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time

import paho.mqtt.client as mqtt

from gate.bus.codec import pack_scan
from gate.core.events import ScanEvent
from gate.house import discovery
from gate.house.build import build_house
from tests.conftest import Collector, api, gate_config, house_config, publish_raw, wait_for


def scan_event(ticket, event="eve", result="admitted", reason="ok", seq=1):
    return ScanEvent(id=f"door-a-{ticket}-{time.monotonic_ns()}", gate="door-a", seq=seq, ts=int(time.time() * 1000),
                     event=event, ticket=ticket, dir="in", result=result, reason=reason, attention=[])

# Home Assistant's MQTT discovery, as documented for sensor, binary_sensor and event (full key names;
# `default_entity_id` since 2025.10, which 2026.4 reads instead of `object_id`).
ENTITY = {"name", "unique_id", "object_id", "default_entity_id", "state_topic", "value_template", "device", "origin",
          "availability", "availability_mode", "availability_template", "availability_topic", "payload_available",
          "payload_not_available", "device_class", "entity_category", "icon", "qos", "json_attributes_topic",
          "json_attributes_template", "enabled_by_default", "encoding"}
COMMON = ENTITY | {"expire_after", "force_update"}
ALLOWED = {"sensor": COMMON | {"unit_of_measurement", "state_class", "suggested_display_precision",
                               "last_reset_value_template", "options"},
           "binary_sensor": COMMON | {"payload_on", "payload_off", "off_delay"},
           "event": ENTITY | {"event_types"}}
# Home Assistant's valid_entity_id: lower-case letters, digits and single underscores, domain-prefixed.
ENTITY_ID = re.compile(r"(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)")
STATE_CLASSES = {"measurement", "total", "total_increasing"}
AVAILABILITY_KEYS = {"topic", "value_template", "payload_available", "payload_not_available"}


def check_ha_config(topic: str, cfg: dict, venue: str) -> None:
    m = re.fullmatch(r"homeassistant/(sensor|binary_sensor|event)/([A-Za-z0-9_-]+)/config", topic)
    assert m, topic
    component = m.group(1)
    assert set(cfg) <= ALLOWED[component], set(cfg) - ALLOWED[component]
    assert cfg["state_topic"] and "+" not in cfg["state_topic"] and "#" not in cfg["state_topic"]
    assert cfg["unique_id"] and cfg["device"]["identifiers"]
    assert cfg["origin"]["name"] == "gate"                                  # the origin block
    # both entity id keys, naming the same entity for old and new Home Assistant
    assert cfg["object_id"] == m.group(2)
    assert ENTITY_ID.fullmatch(cfg["default_entity_id"]), cfg["default_entity_id"]
    assert cfg["default_entity_id"] == component + "." + re.sub(r"[^a-z0-9]+", "_", cfg["object_id"].lower()).strip("_")
    if cfg.get("device_class") == "connectivity":
        assert "availability" not in cfg   # a gate's own status (and will) decides, not the house's
        assert cfg["state_topic"].endswith("/status") and "/house/" not in cfg["state_topic"]
    else:
        assert cfg["availability"] and all(set(a) <= AVAILABILITY_KEYS for a in cfg["availability"])
        assert cfg["availability"][0]["topic"] == f"gate/{venue}/house/status"  # the house's own status
    if component == "sensor":
        assert cfg["state_class"] in STATE_CLASSES
    if component == "event":
        assert cfg["event_types"] and all(isinstance(t, str) for t in cfg["event_types"])
    json.dumps(cfg)


def test_house_discovery_configs_by_home_assistants_rules():
    sensors = discovery.event_sensors("hall", "2026-11-23-eve")
    for topic, cfg in (sensors + [discovery.gate_connectivity("hall", "door-a"), discovery.gate_problem("hall", "door-a")]
                       + discovery.house_alerts("hall")):
        check_ha_config(topic, cfg, "hall")
    classes = {cfg["unique_id"].rsplit("_", 1)[1]: cfg["state_class"] for _, cfg in sensors}
    assert classes == {"inside": "measurement", "admitted": "total_increasing", "rejected": "total_increasing"}
    assert len({cfg["unique_id"] for _, cfg in sensors}) == 3
    assert [discovery.announced_event("hall", t) for t, _ in sensors] == ["2026-11-23-eve"] * 3
    assert discovery.announced_event("other", sensors[0][0]) is None
    now = 10 * 86_400_000
    assert discovery.wanted_events(["eve"], {"tonight": now - 3_600_000, "yesterday": now - 86_400_000}, now) \
        == {"eve", "tonight"}


def test_house_discovery_only_tonight_and_removes_the_rest(tmp_path, broker):
    """Sensors used to be made for any event seen in a scan (yesterday's ticket shown at the door)
    and were never removed."""
    stale = discovery.event_sensors("hall", "yesterday")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="old-house")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for topic, cfg in stale:   # what an earlier night's house left on the broker
        c.publish(topic, json.dumps(cfg), qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    cfg = house_config(tmp_path, broker.port)
    svc = build_house(cfg)
    col = Collector(broker.port, "homeassistant/#", "gate/hall/house/status")
    svc.start()
    try:
        wait_for(svc.connected.is_set, what="house connected")
        wait_for(lambda: all(col.on(t) and col.on(t)[-1] == b"" for t, _ in stale), what="stale sensors removed")
        wait_for(lambda: col.on(discovery.event_sensors("hall", "eve")[0][0]), what="configured event announced")
        assert json.loads(col.on("gate/hall/house/status")[-1])["state"] == "online"
        # Yesterday's ticket shown at the door: rejected, names an old event, makes no sensor;
        # an unknown code names no event and is counted apart.
        old = scan_event("Y1", event="old-show", result="rejected", reason="wrong_event", seq=1)
        unknown = scan_event("h:0123456789abcdef", event="", result="rejected", reason="unknown", seq=2)
        tonight = scan_event("T1", event="late-show", seq=3)
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in (old, unknown, tonight)])
        wait_for(lambda: col.on(discovery.event_sensors("hall", "late-show")[1][0]), what="tonight's event announced")
        h = api(cfg)
        assert h["unattributed"] == {"rejected": 1, "rejected_by_reason": {"unknown": 1}}
        assert not [t for t, _, _ in col.messages if "old-show" in t or "old_show" in t]
        for t, payload, _ in col.messages:
            if t.startswith("homeassistant/") and payload:
                check_ha_config(t, json.loads(payload), "hall")
    finally:
        svc.close()
        col.close()
    late = Collector(broker.port, "gate/hall/house/status")
    wait_for(lambda: late.on("gate/hall/house/status"), what="retained house status")
    assert json.loads(late.on("gate/hall/house/status")[-1])["state"] == "offline"   # a clean stop says so
    late.close()


def test_house_discovery_last_will_when_the_house_dies(tmp_path, broker):
    """Home Assistant kept the last counts for ever when the house died: now its availability goes offline."""
    cfg = tmp_path / "house.toml"
    house_config(tmp_path, broker.port)   # writes house.toml
    col = Collector(broker.port, "gate/hall/house/status")
    p = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(cfg)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: col.on("gate/hall/house/status"), what="house online")
        assert json.loads(col.on("gate/hall/house/status")[-1])["state"] == "online"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    wait_for(lambda: json.loads(col.on("gate/hall/house/status")[-1])["state"] == "offline", timeout=30,
             what="the house's last will")
    col.close()


def test_house_discovery_gate_will_does_not_predate_its_online(tmp_path, broker):
    """A gate's will `offline` used to carry the time its client was made, older than its `online`:
    a consumer ordering by ts thought the gate still online. The will now carries no ts, and the
    house stamps every status with the time it heard it."""
    from gate.link import GateLink
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True)
    house = build_house(house_config(tmp_path, broker.port))
    house.start()
    col = Collector(broker.port, "gate/hall/door-a/status")
    made_ms = time.time_ns() // 1_000_000
    link = GateLink(cfg, tmp_path / "o.db", profile="turnstile")
    # The old will carried the time the client was made: make sure `online` is stamped later than that.
    wait_for(lambda: time.time_ns() // 1_000_000 > made_ms + 1, what="the clock past the client's making")
    link.start()
    try:
        wait_for(lambda: col.on("gate/hall/door-a/status"), what="online")
        online = json.loads(col.on("gate/hall/door-a/status")[-1])
        wait_for(lambda: house.state.gates.get("door-a", {}).get("state") == "online", what="house saw online")
        seen_online = house.state.gates["door-a"]["since"]
        # The gate dies without a goodbye: its socket just goes.
        link.client.loop_stop()
        link.client.socket().shutdown(socket.SHUT_RDWR)
        wait_for(lambda: json.loads(col.on("gate/hall/door-a/status")[-1])["state"] == "offline", timeout=30,
                 what="the gate's last will")
        will = json.loads(col.on("gate/hall/door-a/status")[-1])
        assert will.get("ts", online["ts"] + 1) > online["ts"]
        wait_for(lambda: house.state.gates["door-a"]["state"] == "offline", what="house saw the will")
        assert house.state.gates["door-a"]["since"] >= seen_online
    finally:
        link.close(drain_s=0)
        house.close()
        col.close()


def test_house_discovery_object_ids_never_collide():
    ids = {discovery.object_id(x) for x in ("2026-11-23.eve", "2026-11-23_eve", "a:b", "a_b", "a.b")}
    assert len(ids) == 5
    assert discovery.object_id("gate_hall_eve") == "gate_hall_eve"      # plain ids unchanged
