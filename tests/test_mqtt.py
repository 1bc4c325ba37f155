"""Gates, broker and house together: a real Mosquitto on a free port."""

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np

from gate.bus.codec import pack_scan
from gate.house.attendance import export
from gate.house.build import build_house
from gate.sim.render import compose
from tests.conftest import (
    REPO,
    Collector,
    api,
    api_up,
    eve,
    gate_config,
    house_config,
    publish_raw,
    run_scanner,
    scan_event,
    start_link,
    wait_for,
    wait_house_active,
)
from tests.waits import house_settled, wait_while_moving

RNG = np.random.default_rng(5)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def test_mqtt_happy_path_counts_on_retained_topics_and_api(tmp_path, broker, house, mock_factory, tickets_csv):
    col = Collector(broker.port, "gate/hall/#", "homeassistant/#")
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True)
    frames = []
    for c in ("CODE-0001", "CODE-0002", "NOPE"):
        frames += [EMPTY] * 3 + [compose(c, "clean", rng=RNG)] * 3
    s, th = run_scanner(cfg, frames + [EMPTY] * 30, mock_factory, tickets_csv)
    th.join(30)
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 2 and h["unattributed"]["rejected"] == 1 else None)(
        api(house.cfg)), what="house counts")
    # An unknown code names no event: counted apart, not under the event the gate saw last.
    assert eve(h)["inside"] == 2 and eve(h)["rejected"] == 0
    assert h["unattributed"]["rejected_by_reason"] == {"unknown": 1}
    assert eve(h)["by_gate"]["door-a"]["admitted"] == 2
    assert [a["tags"] for a in h["arrivals"]] == [["wheelchair"], ["member"]]
    wait_for(lambda: col.on("gate/hall/house/eve/inside") and col.on("gate/hall/house/eve/inside")[-1] == b"2",
             what="retained inside topic")
    last = json.loads(col.on("gate/hall/house/eve")[-1])
    assert (last["admitted"], last["inside"], last["capacity"]) == (2, 2, 100)
    assert json.loads(col.on("gate/hall/door-a/status")[0])["state"] == "online"
    ha = [t for t, _, _ in col.messages if t.startswith("homeassistant/")]
    assert any("binary_sensor" in t for t in ha) and any("_inside/config" in t for t in ha)
    col.close()
    # a late subscriber gets the retained numbers at once
    late = Collector(broker.port, "gate/hall/house/eve/inside", "gate/hall/door-a/status")
    wait_for(lambda: late.on("gate/hall/house/eve/inside") == [b"2"], what="retained for a late subscriber")
    wait_for(lambda: late.on("gate/hall/door-a/status"), what="retained status")
    assert json.loads(late.on("gate/hall/door-a/status")[-1])["state"] == "offline"  # the gate has stopped
    late.close()


def test_mqtt_used_ticket_sync_between_gates(tmp_path, broker, mock_factory, tickets_csv):
    go = threading.Event()

    def door_b_frames():
        while not go.is_set():
            yield EMPTY
        for _ in range(4):
            yield compose("CODE-0001", "clean", rng=RNG)
        for _ in range(10):
            yield EMPTY
    cfg_a = gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True)
    cfg_b = gate_config(tmp_path, gate="door-b", port=broker.port, mqtt_on=True)
    b, tb = run_scanner(cfg_b, door_b_frames(), mock_factory, tickets_csv)
    wait_for(lambda: b.link.connected.is_set(), what="door-b connected")
    from gpiozero.pins.mock import MockFactory
    a, ta = run_scanner(cfg_a, [EMPTY] * 2 + [compose("CODE-0001", "clean", rng=RNG)] * 3 + [EMPTY] * 5,
                        MockFactory(), tickets_csv)
    ta.join(20)
    t0 = time.monotonic()
    wait_for(lambda: b.store.history("T1").inside, what="sync to door-b")
    assert time.monotonic() - t0 < 1.0
    verdicts = []
    b.on_verdict = lambda v, w, e: verdicts.append(v)
    go.set()
    tb.join(20)
    assert [v.reason for v in verdicts] == ["already_used"] and "door-a" in verdicts[0].detail


def test_mqtt_gate_killed_mid_burst_counts_exact(tmp_path, broker, house):
    cfg = gate_config(tmp_path, gate="door-k", port=broker.port, mqtt_on=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "tests.gate_burst", cfg.path]
    p = subprocess.Popen(cmd + ["0", "400", "200"], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    durable = []
    while len(durable) < 150:
        durable.append(p.stdout.readline().strip())
    p.kill()  # SIGKILL mid-burst
    rest = p.stdout.read().split()
    p.wait()
    durable += [t for t in rest if t.startswith("T")]
    # What is durable is what the outbox holds: the kill may fall between an append and its print.
    with contextlib.closing(sqlite3.connect(os.path.join(cfg.storage.dir, "outbox.db"))) as db:
        appended = db.execute("SELECT value FROM counter WHERE name='seq'").fetchone()[0]
    assert appended - len(durable) in (0, 1), (appended, len(durable))
    p2 = subprocess.run(cmd + ["1000", "50", "0"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert "drained" in p2.stdout
    expected = appended + 50
    wait_for(lambda: eve(api(house.cfg))["admitted"] == expected, 20,
             what=lambda: (lambda h: f"{expected} admitted (admitted {eve(h)['admitted']}; gates {h['gates']})")(
                 api(house.cfg)))
    house_settled(broker.port, house.cfg)   # and nothing more was on its way
    assert eve(api(house.cfg))["admitted"] == expected


def test_mqtt_broker_killed_and_restarted_mid_run(tmp_path, broker, house):
    outbox, link = start_link(tmp_path, "door-b", broker.port)
    # A broker that crashes keeps what it last saved: the house's session (subscribed hours ago at a
    # venue) must be in it, or what the gate sends after the restart, before the house is back, is
    # dropped with nobody to tell the house it exists. Saved once a second after a change.
    subscribed = time.time()
    db = broker.dir / "mosquitto.db"
    wait_for(lambda: db.exists() and db.stat().st_mtime > subscribed, 5, what="the broker saving the house's session")
    t0 = int(time.time() * 1000) - 300_000   # stamped one a second, as a lane passes them (gate/core/lane.py)
    for i in range(300):
        outbox.append("door-b", t0 + i * 1000, "eve", f"B{i}", "in", "admitted", "ok")
        if i == 150:
            broker.kill()
        if i % 10 == 0:
            time.sleep(0.01)   # paced, so that some are in flight when the broker dies
    broker.start()  # same port, same persistence file
    wait_for(lambda: outbox.depth() == 0, 30, what="outbox drained after the broker came back")
    # (a gap the house finds is asked for again after 3 s: it may stand still that long)
    wait_while_moving(lambda: eve(api(house.cfg))["admitted"] >= 300, lambda: eve(api(house.cfg))["admitted"], 15,
                      what=lambda: f"300 admitted (gates {api(house.cfg)['gates']})")
    assert eve(api(house.cfg))["admitted"] == 300
    link.close()


def test_mqtt_house_killed_and_restarted(tmp_path, broker):
    hcfg = house_config(tmp_path, broker.port)
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    house = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", hcfg.path], env=env,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: api_up(hcfg), what="house up")
    outbox, link = start_link(tmp_path, "door-h", broker.port)
    t0 = int(time.time() * 1000) - 400_000   # stamped one a second, as a lane passes them (gate/core/lane.py)
    try:
        for i in range(400):
            outbox.append("door-h", t0 + i * 1000, "eve", f"H{i}", "in", "admitted", "ok")
            if i == 200:
                house.kill()
                house.wait()
            if i % 20 == 0:
                time.sleep(0.01)   # paced, so that the house dies mid-stream
        wait_for(lambda: outbox.depth() == 0, 20, what="acknowledged by the broker")
        house = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", hcfg.path], env=env,
                                 stderr=subprocess.DEVNULL)
        wait_for(lambda: api_up(hcfg) and eve(api(hcfg))["admitted"] == 400, 30, what="400 after restart")
        house_settled(broker.port, hcfg)
        assert eve(api(hcfg))["admitted"] == 400
    finally:
        house.kill()
        house.wait()
        link.close()


def test_a_clean_stop_leaves_no_stored_event_unacknowledged(tmp_path, broker):
    """A house stopped cleanly right after working through a backlog has acknowledged everything it
    stored (each batch as it is committed; what is left goes before the `offline`), even with nothing
    more arriving to carry the acknowledgements: the broker hands nothing stored to the next start, and
    every event counts once."""
    import paho.mqtt.client as mqtt

    from gate.bus.codec import unpack_scan
    from gate.core.events import ScanEvent
    from gate.core.storage import HouseFiles
    cfg = house_config(tmp_path, broker.port)
    second = build_house(cfg)
    second.start()
    now = int(time.time() * 1000)
    try:
        wait_house_active(second)
        with second.state.lock:   # the intake waits at its first event: all 3,000 arrive before it goes on
            for g in range(10):
                publish_raw(broker.port, f"gate/hall/door-{g}/scan", [pack_scan(ScanEvent(
                    f"door-{g}-{i}", f"door-{g}", i + 1, now - (300 - i) * 1000, "eve", f"T{g}-{i}", "in",
                    "admitted", "ok")) for i in range(300)], client_id=f"door-{g}")
            size, still = -1, time.monotonic()
            while time.monotonic() - still < 0.5:   # all of it handed over (what the intake took waits with it)
                if len(second.bus.inbox) != size:
                    size, still = len(second.bus.inbox), time.monotonic()
                time.sleep(0.02)
        # stopped the moment the last is counted: its batch's acknowledgements have no traffic to ride on
        wait_for(lambda: second.state.counts.seen >= 3000, 30, step=0.001, what="all of it counted")
    finally:
        second.close()
    # What the broker still holds for the house's session, taken under its id and not acknowledged.
    handed: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="house-hall", clean_session=False, manual_ack=True)
    c.on_message = lambda c, u, m: handed.append(m.payload) if m.topic.endswith("/scan") else None
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    seen, still = -1, time.monotonic()
    while time.monotonic() - still < 1.5:   # until nothing more comes for 1.5 s
        if len(handed) != seen:
            seen, still = len(handed), time.monotonic()
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    db = sqlite3.connect(HouseFiles.of(cfg.storage.dir).log)
    stored = {(g, i) for g, i in db.execute("SELECT gate, id FROM scans")}
    db.close()
    again = [e for e in map(unpack_scan, handed) if (e.gate, e.id) in stored]
    assert len(stored) == 3000
    assert again == []
    third = build_house(cfg)
    third.start()
    try:
        wait_for(lambda: third.state.counts.events["eve"].admitted == 3000, 30, what="all 3,000, once each")
        house_settled(broker.port, cfg)
        assert third.state.counts.events["eve"].admitted == 3000
    finally:
        third.close()


def test_mqtt_duplicate_deliveries_counted_once(broker, house):
    p = pack_scan(scan_event("D1", id="same-id"))
    publish_raw(broker.port, "gate/hall/door-a/scan", [p] * 5)
    wait_for(lambda: house.state.duplicates == 4, what="duplicates seen")   # known before the first is stored
    house_settled(broker.port, house.cfg)
    assert eve(api(house.cfg))["admitted"] == 1 and house.state.duplicates == 4


def test_mqtt_conflict_two_offline_gates_admit_one_ticket(broker, house):
    now = int(time.time() * 1000)
    publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(scan_event("C1", "door-b", now))], "b")
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("C1", "door-a", now - 5000))], "a")
    h = wait_for(lambda: (lambda h: h if eve(h)["conflicts"] else None)(api(house.cfg)), what="conflict")
    [c] = eve(h)["conflicts"]
    assert (c["gate"], c["first_gate"]) == ("door-b", "door-a")
    assert eve(h)["admitted"] == 1 and eve(h)["inside"] == 1


def test_mqtt_fuzzed_payloads_are_dropped_and_counted(broker, house):
    rng = random.Random(9)
    good = msgpack.unpackb(pack_scan(scan_event("F1")))
    bad = [
        b"", b"\xc1", b"\x92\x01", rng.randbytes(300), pack_scan(scan_event("F2"))[:-3],
        pack_scan(scan_event("F3")) + b"\x00", b"\x91" * 5000,
        msgpack.packb({**good, "v": 2}), msgpack.packb({**good, "seq": "one"}),
        msgpack.packb({**good, "result": "teleported"}), msgpack.packb([1, 2, 3]),
        msgpack.packb({**good, "gate": "door-z"}), b"\x81\xa1v" + b"\xff" * 10,
        msgpack.packb({**good, "ticket": "x" * 5000}),
    ] + [rng.randbytes(rng.randint(1, 64)) for _ in range(200)]
    publish_raw(broker.port, "gate/hall/door-a/scan", bad)
    publish_raw(broker.port, "gate/hall/door-a/extra/scan", [pack_scan(scan_event("F4"))], "x")
    publish_raw(broker.port, "gate/hall/door-a/status", [b"{not json", b"[]", b'{"state": "dancing"}'], "y")
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("F5", id="after-fuzz"))], "z")
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 1 else None)(api(house.cfg)), what="valid event after fuzz")
    m = h["malformed"]
    assert sum(m.values()) >= len(bad) + 3
    for kind in ("bad_msgpack", "unknown_version", "bad_field", "oversized", "gate_mismatch", "unknown_topic",
                 "bad_json"):
        assert m.get(kind), kind


def test_mqtt_acl_gate_cannot_publish_as_another(tmp_path, make_broker):
    acl = ("user house\ntopic readwrite #\n\n"
           "pattern write gate/hall/%c/#\npattern read gate/hall/#\npattern read homeassistant/#\n"
           "topic read gate/hall/#\n")
    b = make_broker(acl)
    cfg = house_config(tmp_path, b.port, "house-acl")
    svc = build_house(cfg)
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    try:
        publish_raw(b.port, "gate/hall/door-b/scan", [pack_scan(scan_event("X1", "door-b"))], "door-a")
        publish_raw(b.port, "gate/hall/door-a/scan", [pack_scan(scan_event("X2", "door-a"))], "door-a")
        wait_for(lambda: eve(api(cfg))["admitted"] == 1, what="own topic counted")
        house_settled(b.port, cfg)   # the forged one would be in by now
        h = api(cfg)
        assert eve(h)["admitted"] == 1 and eve(h)["by_gate"] == {"door-a": {"admitted": 1}}
    finally:
        svc.close()


def test_house_export_attendance_log(tmp_path, broker, venue_keys):
    house = build_house(house_config(tmp_path, broker.port, signing=venue_keys.signing_toml()))
    house.start()
    wait_for(house.connected.is_set, what="house connected")
    try:
        _export_attendance_log(broker, house, venue_keys)
    finally:
        house.close()


def _export_attendance_log(broker, house, venue_keys):
    import io

    from gate.core.events import Ticket
    tickets = [Ticket("E1", "eve", "c1", holder="Ada Lovelace", patron="P1"),
               Ticket("E2", "eve", "c2", holder="Alan Turing")]
    publish_raw(broker.port, "gate/hall/tickets", [venue_keys.pack(tickets, seq=1)], "box")
    wait_for(lambda: "E1" in house.state.holders, what="holders")
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("E1")), pack_scan(scan_event("E2"))])
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 2)
    out = io.StringIO()
    assert export(house, "csv", out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == "ticket,holder,patron,event,gate,time,conflict,visits,kind,first_time,tags,order,position"
    assert lines[1].startswith("E1,Ada Lovelace,P1,eve,door-a,")
    out = io.StringIO()
    export(house, "json", out)
    assert json.loads(out.getvalue())[1]["holder"] == "Alan Turing"


def test_mqtt_events_the_broker_lost_are_recovered_from_the_gate(tmp_path, broker):
    """Events acknowledged by the broker but never delivered (no house session yet; the same as a
    broker killed before handing them on) are asked for by seq and resent by the gate."""
    outbox, link = start_link(tmp_path, "door-r", broker.port)
    for i in range(5):
        outbox.append("door-r", int(time.time() * 1000), "eve", f"R{i}", "in", "admitted", "ok")
    wait_for(lambda: outbox.depth() == 0, what="acknowledged by the broker")   # and dropped: nobody listens
    hcfg = house_config(tmp_path, broker.port, "house-r")
    house = build_house(hcfg)
    house.start()
    try:
        wait_for(house.connected.is_set)
        outbox.append("door-r", int(time.time() * 1000), "eve", "R5", "in", "admitted", "ok")
        wait_for(lambda: eve(api(hcfg))["admitted"] == 1, what="the live event")
        wait_for(lambda: eve(api(hcfg))["admitted"] == 6, 15, what="the five lost ones, resent")
        g = next(g for g in api(hcfg)["gates"] if g["gate"] == "door-r")
        assert g["missing"] == 0 and g["unrecovered"] == 0
    finally:
        house.close()
        link.close()


def test_mqtt_health_topic_reports_the_gate(tmp_path, broker, mock_factory, tickets_csv):
    col = Collector(broker.port, "gate/hall/door-a/health")
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True)
    s, th = run_scanner(cfg, [EMPTY] * 30, mock_factory, tickets_csv)
    th.join(20)
    h = json.loads(wait_for(lambda: col.on("gate/hall/door-a/health"), what="health")[0])
    for key in ("fps", "decode_ms_p50", "decode_ms_p95", "outbox_depth", "camera_ok", "ticket_data_version",
                "cpu_temp"):
        assert key in h, key
    assert h["ticket_data_version"] > 0
    col.close()


def test_mqtt_credentials_from_file_and_environment(tmp_path, make_broker):
    import shutil

    from gate.link import GateLink
    passwd = tmp_path / "passwd"
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-c", "-b", str(passwd),
                    "door-p", "correct horse"], check=True)
    b = make_broker()
    conf = b.dir / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("allow_anonymous true", f"allow_anonymous false\npassword_file {passwd}"))
    b.stop()
    b.start()
    (tmp_path / "pw").write_text("correct horse\n")
    cfg = gate_config(tmp_path, gate="door-p", port=b.port, mqtt_on=True)
    cfg.mqtt.username, cfg.mqtt.password_file = "door-p", str(tmp_path / "pw")
    link = GateLink(cfg, tmp_path / "o.db", profile="turnstile")
    link.start()
    assert link.connected.wait(10)
    link.close()
    os.environ["GATE_MQTT_PASSWORD"] = "wrong"
    try:
        link = GateLink(cfg, tmp_path / "o2.db", profile="turnstile")
        link.start()
        assert not link.connected.wait(3)   # refused: the broker's answer is checked
        link.close(drain_s=0)
    finally:
        del os.environ["GATE_MQTT_PASSWORD"]


def test_mqtt_status_reported_while_the_link_connects_is_not_lost(tmp_path, broker):
    """The loop reports the gate's mode just as the network thread announces `online` (without it):
    the status topic must still end up saying the mode. It used to keep the announcement without it
    until the next change (the dashboard showed no mode; a test waited for it in vain under load)."""
    from gate.link import GateLink
    col = Collector(broker.port, "gate/hall/door-a/status")
    link = GateLink(gate_config(tmp_path, port=broker.port, mqtt_on=True), tmp_path / "o.db", profile="turnstile")
    reporter = threading.Thread(target=link.report, kwargs={"mode": "exit"})
    subscribe = link.client.subscribe

    def subscribe_while_the_loop_reports(*args, **kw):   # called in _on_connect, after `online` is queued
        reporter.start()
        reporter.join(0.5)   # done at once if report() does not wait for _on_connect to finish
        return subscribe(*args, **kw)
    link.client.subscribe = subscribe_while_the_loop_reports
    link.start()
    try:
        wait_for(link.connected.is_set, what="door-a connected")
        reporter.join(5)
        wait_for(lambda: [s for s in map(json.loads, col.on("gate/hall/door-a/status"))
                          if s["state"] == "online" and s.get("mode") == "exit"], what="the mode on the status topic")
    finally:
        link.close(drain_s=0)
        col.close()


def test_acks_of_a_session_the_broker_lost_are_never_sent_under_the_new_one(tmp_path):
    """A broker that comes back without the house's session (its store lost) numbers messages afresh: an
    ack of a message from the old session would confirm whichever new message has its number, perhaps
    not yet on disk. Those acks are dropped; after a reconnect that kept the session they go out."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    house = build_house(house_config(tmp_path, 1))
    bus = house.bus
    sent: list = []
    bus.client.ack_many = sent.extend   # what would go to the broker
    ok = ReasonCode(PacketTypes.CONNACK, identifier=0)

    def connect(session_present):
        bus._on_connect(bus.client, None, mqtt.ConnectFlags(session_present=session_present), ok, None)

    def deliver(mid):
        msg = mqtt.MQTTMessage(mid=mid, topic=b"gate/hall/door-a/scan")
        msg.qos, msg.payload = 1, b"-"
        bus._on_message(bus.client, None, msg)
        return bus.inbox.pop()[2]   # its ack token, as the intake hands it back once stored
    try:
        connect(False)
        old = deliver(7)
        connect(True)                 # the broker kept the session: it hands 7 again under the same number
        bus.acks_due([(old, 1)])
        assert sent == [(7, 1)]
        older = deliver(8)
        connect(False)                # the broker lost the session: its 8 is another message now
        bus.acks_due([(older, 1)])
        assert sent == [(7, 1)]
        bus.acks_due([(deliver(8), 1)])
        assert sent == [(7, 1), (8, 1)]
    finally:
        house.close()
