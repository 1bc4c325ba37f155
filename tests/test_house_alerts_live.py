"""Flow and alerts on real parts: the house built as `gate house` builds it, a real Mosquitto, a signed
ticket list, scans published by gates' clients; Home Assistant's discovery for the alerts and doors
as it lands on the broker; the curtain and who is expected from a real pretix."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from gate.bus.codec import pack_scan
from gate.config import parse
from gate.core.events import Ticket
from gate.house import discovery
from gate.house.build import build_house
from tests.conftest import Collector, api, free_port, scan_event, wait_for
from tests.conftest import publish_raw as _publish_raw
from tests.test_house_discovery import check_ha_config
from tests.test_pretix_server import house_toml, pretix, seed  # noqa: F401 (the session's pretix server)


def house_cfg(tmp_path, port, venue_keys, extra=""):
    text = (venue_keys.signing_toml() + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\n'
            f'capacity = {{ "eve" = 4 }}\nclient_id = "house-hall"\ncurtain = {{ "eve" = "23:59" }}\n{extra}'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 5\n[storage]\ndir = "{tmp_path}/house"\n')
    path = tmp_path / "house.toml"
    path.write_text(text)
    return parse(text, str(path))


def retained(port, topic, timeout=10):
    """What the broker holds retained on `topic`, as a fresh subscriber sees it."""
    col = Collector(port, topic)
    try:
        return wait_for(lambda: col.on(topic), timeout, what=f"retained {topic}")[-1]
    finally:
        col.close()


def test_house_live_flow_alerts_and_home_assistant_entities(tmp_path, broker, venue_keys):
    cfg = house_cfg(tmp_path, broker.port, venue_keys)
    house = build_house(cfg)
    col = Collector(broker.port, "gate/hall/house/alerts", "gate/hall/house/alerts/active", "homeassistant/#",
                    "gate/hall/house/eve")
    house.start()
    try:
        wait_for(house.connected.is_set, what="house connected")
        tickets = [Ticket(f"T{i}", "eve", f"CODE-{i}", f"Guest {i}", f"A{i}") for i in range(6)]
        tickets[0] = Ticket("T0", "eve", "CODE-0", "Grace Hopper", "A3", tags=("wheelchair",))
        _publish_raw(broker.port, "gate/hall/tickets", [venue_keys.pack(tickets, seq=1)], "boxoffice")
        wait_for(lambda: api(cfg)["events"][0]["flow"]["sold"] == 6, what="the list's six tickets expected")
        # Home Assistant: the alerts' event entity and the house's problem sensor, by its rules.
        for topic, _ in discovery.house_alerts("hall"):
            wait_for(lambda t=topic: col.on(t), what=f"{topic} announced")
            check_ha_config(topic, json.loads(col.on(topic)[-1]), "hall")
        event_cfg = json.loads(col.on("homeassistant/event/gate_hall_alerts/config")[-1])
        assert set(event_cfg["event_types"]) >= {"arrival", "capacity", "flow", "door", "sync", "security"}
        assert event_cfg["state_topic"] == "gate/hall/house/alerts"
        assert json.loads(retained(broker.port, "gate/hall/house/alerts/active"))["problem"] is False

        now = int(time.time() * 1000)
        _publish_raw(broker.port, "gate/hall/door-a/scan",
                     [pack_scan(scan_event(f"T{i}", ts=now - 4000 + i * 1000, attention=["wheelchair"] if i == 0 else []))
                      for i in range(4)], "door-a")
        # The arrival, told at once, with door, name and seat; QoS 1 and not retained.
        wait_for(lambda: [a for a in col.on("gate/hall/house/alerts") if b'"arrival"' in a], what="arrival alert")
        arrival = json.loads([a for a in col.on("gate/hall/house/alerts") if b'"arrival"' in a][0])
        assert arrival["text"] == "Assist Grace Hopper (wheelchair) at door-a, seat A3." and arrival["level"] == "warn"
        assert all(not r for t, _, r in col.messages if t == "gate/hall/house/alerts")
        # Four in of capacity four: full, critical; the problem sensor's topic says so, retained.
        wait_for(lambda: any(b'"capacity"' in a and b'"critical"' in a for a in col.on("gate/hall/house/alerts")),
                 what="capacity alert")
        wait_for(lambda: json.loads(retained(broker.port, "gate/hall/house/alerts/active"))["problem"] is True,
                 what="problem on")
        h = api(cfg)
        f = h["events"][0]["flow"]
        assert (f["sold"], f["in"], f["still_expected"]) == (6, 4, 2) and f["curtain_from"] == "config"
        assert f["doors"]["door-a"]["admitted"] == 4 and f["curve"]["doors"]["door-a"][-1] == 4
        assert "critical" in [a["level"] for a in h["alarms"]] and h["alerts_recent"]
        # The retained house object carries the flow too (without the curves).
        wait_for(lambda: json.loads(col.on("gate/hall/house/eve")[-1])["flow"]["in"] == 4, what="retained flow")
        assert "curve" not in json.loads(col.on("gate/hall/house/eve")[-1])["flow"]
    finally:
        house.close()
        col.close()


def test_house_removes_retired_gates_connectivity_and_gates_own_status_decides(tmp_path, broker, venue_keys):
    roster = tmp_path / "roster.json"
    roster.write_text(json.dumps({"venue": "hall", "gates": ["door-a", "door-z"], "dashboards": [],
                                  "revoked": ["door-z"]}))
    # What earlier nights' houses left on the broker: three doors' connectivity entities.
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="old-house")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for gate in ("door-a", "door-old", "door-z"):
        topic, cfg = discovery.gate_connectivity("hall", gate)
        c.publish(topic, json.dumps(cfg), qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    cfg = house_cfg(tmp_path, broker.port, venue_keys, extra=f'roster = "{roster}"\n')
    house = build_house(cfg)
    house.start()
    try:
        wait_for(lambda: house.publisher.gate_configs() == {"door-a", "door-old", "door-z"}, what="configs seen")
        wait_for(house.standby.active, what="the house won the election: it publishes")
        _publish_raw(broker.port, "gate/hall/door-a/status", [json.dumps(
            {"state": "online", "profile": "turnstile", "version": "t", "ts": int(time.time() * 1000)}).encode()],
            "door-a")
        wait_for(lambda: "door-a" in house.doors.known(), what="door-a heard")
        house.watch.retire_doors()
        # door-old is not on the roster and door-z is revoked there: both entities go (empty retained configs)
        for gate in ("door-old", "door-z"):
            topic, _ = discovery.gate_connectivity("hall", gate)
            wait_for(lambda t=topic: retained_or_none(broker.port, t) is None, what=f"{gate} removed")
        kept, _ = discovery.gate_connectivity("hall", "door-a")
        kept_cfg = json.loads(retained(broker.port, kept))
        assert "availability" not in kept_cfg and kept_cfg["state_topic"] == "gate/hall/door-a/status"
        assert house.publisher.retired == {"door-old", "door-z"}
        # Taken off the roster later, door-a goes too; back on it, it is announced again.
        roster.write_text(json.dumps({"venue": "hall", "gates": [], "dashboards": []}))
        house.watch.retire_doors()
        wait_for(lambda: retained_or_none(broker.port, kept) is None, what="door-a removed")
        roster.write_text(json.dumps({"venue": "hall", "gates": ["door-a", "door-b"], "dashboards": []}))
        house.watch.retire_doors()
        wait_for(lambda: retained_or_none(broker.port, kept) is not None, what="door-a announced again")
    finally:
        house.close()


def retained_or_none(port, topic):
    col = Collector(port, topic)
    try:
        time.sleep(0.3)   # a retained message arrives at once on subscribing; none means none is held
        got = col.on(topic)
        return got[-1] if got else None
    finally:
        col.close()


def test_house_forgets_a_silent_gate(tmp_path, broker, venue_keys):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="old-house")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    topic, gcfg = discovery.gate_connectivity("hall", "door-gone")
    c.publish(topic, json.dumps(gcfg), qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    cfg = house_cfg(tmp_path, broker.port, venue_keys, extra="forget_gate_after_h = 0.0005\n")   # 1.8 s
    house = build_house(cfg)
    house.start()
    try:
        wait_for(lambda: "door-gone" in house.publisher.gate_configs(), what="config seen")
        wait_for(house.standby.active, what="the house won the election: it publishes")
        house.watch.retire_doors()
        assert "door-gone" not in house.publisher.retired   # not silent long enough yet
        time.sleep(2)
        house.watch.retire_doors()
        wait_for(lambda: retained_or_none(broker.port, topic) is None, what="silent door removed")
    finally:
        house.close()


def test_house_curtain_and_tickets_expected_from_pretix(pretix, broker, tmp_path, venue_keys):  # noqa: F811
    made = seed(pretix, positions=[{"name": f"Guest {i}", "date": i % 2} for i in range(5)], dates=2)
    path, cfg = house_toml(tmp_path, pretix, made, broker.port, venue_keys)
    house = build_house(cfg)
    house.start()
    try:
        wait_for(lambda: house.pretix.syncs >= 1, 30, what="first pretix sync")
        house.watch.read_curtains()
        first, second = (f"gala-{s}" for s in made["subevents"])
        wait_for(lambda: house.state.flow.summary(first)["sold"] == 3, what="the house's own list applied")
        f = house.state.flow.summary(first)
        assert f["curtain_from"] == "pretix" and f["still_expected"] == 3
        g = house.state.flow.summary(second)
        assert g["sold"] == 2 and g["curtain"] - f["curtain"] == 86_400_000   # the dates are a day apart
        assert abs(f["curtain"] - (time.time() * 1000 + 3600_000)) < 600_000   # seeded an hour from now
    finally:
        house.close()


def test_house_sync_alert_when_pretix_does_not_answer(tmp_path, broker, venue_keys):
    (tmp_path / "pretix.token").write_text("abc123\n")
    text = (venue_keys.signing_toml(publisher=True) + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nkeepalive = 5\n[storage]\ndir = "{tmp_path}/house"\n'
            f'[pretix]\nurl = "http://127.0.0.1:{free_port()}"\norganizer = "org"\nevent = "gala"\ncheckin_list = 1\n'
            f'token_file = "{tmp_path}/pretix.token"\n')
    cfg = parse(text, str(tmp_path / "house.toml"))
    house = build_house(cfg)
    col = Collector(broker.port, "gate/hall/house/alerts")
    house.start()
    try:
        got = wait_for(lambda: [json.loads(a) for a in col.on("gate/hall/house/alerts") if b'"sync"' in a], 20,
                       what="sync alert")
        # raised by the pretix link itself (gate/house/pretix_link.py), through the house's one alerts publisher
        assert got[0]["level"] == "warn" and got[0]["text"].startswith("pretix sync failed:")
        assert "the gates keep the last list" in got[0]["text"] and len({a["text"] for a in got}) == 1
    finally:
        house.close()
        col.close()
