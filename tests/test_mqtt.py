"""Gates, broker and house together: a real Mosquitto on a free port."""

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.bus.codec import pack_scan
from gate.camera import MemorySource
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house.attendance import export
from gate.house.build import build_house
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import REPO, Collector, free_port, gate_config, wait_for

RNG = np.random.default_rng(5)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def house_config(tmp_path, port, name="house", signing=""):
    listen = f"127.0.0.1:{free_port()}"
    text = (f'[house]\nvenue = "hall"\nlisten = "{listen}"\ncapacity = {{ "eve" = 100 }}\n'
            f'client_id = "house-hall"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 5\n'
            f'[storage]\ndir = "{tmp_path}/{name}"\n{signing}')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return parse(text, str(path))


def api(cfg):
    with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house", timeout=5) as r:
        return json.load(r)


def eve(h):
    return next((e for e in h["events"] if e["event"] == "eve"), {"admitted": 0, "inside": 0, "rejected": 0})


@pytest.fixture
def house(tmp_path, broker):
    cfg = house_config(tmp_path, broker.port)
    svc = build_house(cfg)
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    yield svc
    svc.close()


def run_scanner(cfg, frames, mock_factory, tickets_csv=None, fps=30):
    if tickets_csv:
        st = TicketStore(cfg.storage.dir + "/tickets.db")
        st.replace_all(read_ticket_file(tickets_csv))
        st.close()
    s = Scanner(cfg, MemorySource(frames, fps), pin_factory=mock_factory)
    th = threading.Thread(target=s.run)
    th.start()
    return s, th


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
    p2 = subprocess.run(cmd + ["1000", "50", "0"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert "drained" in p2.stdout
    expected = len(durable) + 50
    wait_for(lambda: eve(api(house.cfg))["admitted"] == expected, 20, what=f"{expected} admitted")
    time.sleep(0.5)
    assert eve(api(house.cfg))["admitted"] == expected


def test_mqtt_broker_killed_and_restarted_mid_run(tmp_path, broker, house):
    outbox, link = start_link(tmp_path, "door-b", broker.port)
    for i in range(300):
        outbox.append("door-b", int(time.time() * 1000), "eve", f"B{i}", "in", "admitted", "ok")
        if i == 150:
            broker.kill()
        if i % 10 == 0:
            time.sleep(0.01)
    broker.start()  # same port, same persistence file
    wait_for(lambda: outbox.depth() == 0, 30, what="outbox drained after the broker came back")
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 300, 30, what="300 admitted")
    link.close()


def test_mqtt_house_killed_and_restarted(tmp_path, broker):
    hcfg = house_config(tmp_path, broker.port)
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    house = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", hcfg.path], env=env,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: _up(hcfg), what="house up")
    outbox, link = start_link(tmp_path, "door-h", broker.port)
    try:
        for i in range(400):
            outbox.append("door-h", int(time.time() * 1000), "eve", f"H{i}", "in", "admitted", "ok")
            if i == 200:
                house.kill()
                house.wait()
            if i % 20 == 0:
                time.sleep(0.01)
        wait_for(lambda: outbox.depth() == 0, 20)
        house = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", hcfg.path], env=env,
                                 stderr=subprocess.DEVNULL)
        wait_for(lambda: _up(hcfg) and eve(api(hcfg))["admitted"] == 400, 30, what="400 after restart")
        time.sleep(0.5)
        assert eve(api(hcfg))["admitted"] == 400
    finally:
        house.kill()
        link.close()


def start_link(tmp_path, gate, port):
    """A real gate outbox and MQTT link, connected."""
    from gate.link import GateLink
    from gate.state.outbox import Outbox
    cfg = gate_config(tmp_path, gate=gate, port=port, mqtt_on=True)
    path = tmp_path / f"state-{gate}" / "outbox.db"
    outbox = Outbox(path)
    link = GateLink(cfg, path, profile="turnstile")
    link.start()
    wait_for(link.connected.is_set)
    return outbox, link


def _up(cfg):
    try:
        api(cfg)
        return True
    except OSError:
        return False


def _publish_raw(port, topic, payloads, client_id="raw"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def scan_event(ticket, gate="door-a", ts=None, id=None, **kw):
    return ScanEvent(id=id or f"{gate}-{ticket}-{random.random()}", gate=gate, seq=1, ts=ts or int(time.time() * 1000),
                     event="eve", ticket=ticket, dir="in", result="admitted", reason="ok", **kw)


def test_mqtt_duplicate_deliveries_counted_once(broker, house):
    p = pack_scan(scan_event("D1", id="same-id"))
    _publish_raw(broker.port, "gate/hall/door-a/scan", [p] * 5)
    wait_for(lambda: house.state.duplicates == 4, what="duplicates seen")
    assert eve(api(house.cfg))["admitted"] == 1


def test_mqtt_conflict_two_offline_gates_admit_one_ticket(broker, house):
    now = int(time.time() * 1000)
    _publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(scan_event("C1", "door-b", now))], "b")
    _publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("C1", "door-a", now - 5000))], "a")
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
    _publish_raw(broker.port, "gate/hall/door-a/scan", bad)
    _publish_raw(broker.port, "gate/hall/door-a/extra/scan", [pack_scan(scan_event("F4"))], "x")
    _publish_raw(broker.port, "gate/hall/door-a/status", [b"{not json", b"[]", b'{"state": "dancing"}'], "y")
    _publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("F5", id="after-fuzz"))], "z")
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
    wait_for(svc.connected.is_set)
    try:
        _publish_raw(b.port, "gate/hall/door-b/scan", [pack_scan(scan_event("X1", "door-b"))], "door-a")
        _publish_raw(b.port, "gate/hall/door-a/scan", [pack_scan(scan_event("X2", "door-a"))], "door-a")
        wait_for(lambda: eve(api(cfg))["admitted"] == 1, what="own topic counted")
        time.sleep(0.5)
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
    _publish_raw(broker.port, "gate/hall/tickets", [venue_keys.pack(tickets, seq=1)], "box")
    wait_for(lambda: "E1" in house.state.holders, what="holders")
    _publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("E1")), pack_scan(scan_event("E2"))])
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


def _publish_retained(port, topic, payload, client_id="box-office-test"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
