"""`gate broker config` ships the broker's side of identity: a real Mosquitto runs with exactly
the generated configuration (TLS with the venue CA, a password per party, the ACL,
use_username_as_clientid). The intended traffic flows; every forbidden action is refused,
seen through MQTT v5's reason codes."""

import json
import os
import stat
import time

import paho.mqtt.client as mqtt
import pytest

from gate.bus.codec import pack_scan
from gate.house.build import build_house
from gate.link import GateLink
from gate.state.outbox import Outbox
from tests.conftest import api, eve, free_port, run_gate_cli, scan_event, wait_for
from tests.venue_broker import V5, party_config, password, start_venue_broker


@pytest.fixture
def venue(tmp_path):
    out, b = start_venue_broker(tmp_path)
    yield out, b
    b.stop()


def test_broker_identity_intended_traffic_flows(tmp_path, venue):
    out, b = venue
    listen = f"127.0.0.1:{free_port()}"
    hcfg = party_config(tmp_path, out, b.port, "house",
                        f'[house]\nvenue = "hall"\nlisten = "{listen}"\ncapacity = {{ "eve" = 100 }}\n'
                        'client_id = "house-hall"\n')
    gcfg = party_config(tmp_path, out, b.port, "door-a", '[gate]\nid = "door-a"\nvenue = "hall"\nevents = ["eve"]\n')
    dash = V5(out, b.port, "dashboard")
    assert dash.subscribe("gate/hall/house/#").value < 0x80 and dash.subscribe("homeassistant/#").value < 0x80
    # The box office's list is retained and reaches a gate that subscribes later.
    box = V5(out, b.port, "boxoffice")
    assert box.publish("gate/hall/tickets", b"LIST-BYTES", retain=True).value < 0x80
    # door-a's events acknowledged by the broker before the house ever connected: lost, until asked for.
    outbox = Outbox(tmp_path / "door-a-outbox.db")
    link = GateLink(gcfg, tmp_path / "door-a-outbox.db", profile="turnstile")
    link.start()
    house = None
    try:
        assert link.connected.wait(10), "the gate connects with TLS and its password"
        now = int(time.time() * 1000)
        for i in range(3):
            outbox.append("door-a", now, "eve", f"A{i}", "in", "admitted", "ok")
        wait_for(lambda: outbox.depth() == 0, what="acknowledged by the broker")
        door_b = V5(out, b.port, "door-b")
        door_b.subscribe("gate/hall/tickets")
        wait_for(lambda: [m for m in door_b.messages if m[0] == "gate/hall/tickets" and m[1] == b"LIST-BYTES"
                          and m[2]], what="the retained list at a gate")
        door_b.subscribe("gate/hall/+/scan")
        house = build_house(hcfg)
        house.start()
        assert house.connected.wait(10), "the house connects with TLS and its password"
        outbox.append("door-a", now, "eve", "A3", "in", "admitted", "ok")
        wait_for(lambda: eve(api(hcfg))["admitted"] == 1, what="the gate's scan counted")
        # The house asks door-a (over its resend topic) for seqs 1-3; door-a sends them again.
        wait_for(lambda: eve(api(hcfg))["admitted"] == 4, 15, what="resend requested, delivered and counted")
        assert wait_for(lambda: [m for m in door_b.messages if m[0] == "gate/hall/door-a/scan"],
                        what="other gates hear door-a's scans")
        wait_for(lambda: [m for m in dash.messages if m[0] == "gate/hall/house/eve/inside" and m[1] == b"4"],
                 what="house counts published to the dashboard")
        assert [m for m in dash.messages if m[0].startswith("homeassistant/")], "discovery published"
        assert not [m for m in dash.messages if m[0] == "gate/hall/tickets"]
        door_b.close()
    finally:
        dash.close()
        box.close()
        if house:
            house.close()
        link.close()
        outbox.close()


NOT_AUTHORIZED = 0x87


def test_broker_identity_forbidden_actions_are_refused(tmp_path, venue):
    out, b = venue
    box = V5(out, b.port, "boxoffice")
    box.publish("gate/hall/tickets", b"LIST", retain=True)
    door_a = V5(out, b.port, "door-a", client_id="door-a")
    # A gate publishing as another gate, or a ticket list, or house counts.
    assert door_a.publish("gate/hall/door-b/scan", pack_scan(scan_event("X", gate="door-b"))).value == NOT_AUTHORIZED
    assert door_a.publish("gate/hall/tickets", b"FORGED").value == NOT_AUTHORIZED
    assert door_a.publish("gate/hall/house/eve/inside", b"0").value == NOT_AUTHORIZED
    # A dashboard reading the list (or scans), or writing anything. Mosquitto 2.0 grants the
    # subscription itself and refuses each message at delivery: nothing arrives.
    dash = V5(out, b.port, "dashboard")
    for f in ("gate/hall/tickets", "gate/hall/+/scan", "gate/hall/#", "#"):
        dash.subscribe(f)
    assert door_a.publish("gate/hall/door-a/scan", pack_scan(scan_event("SEEN"))).value < 0x80
    assert door_a.publish("gate/hall/door-a/status", json.dumps({"state": "online"}).encode()).value < 0x80
    wait_for(lambda: [m for m in dash.messages if m[0] == "gate/hall/door-a/status"],
             what="the dashboard does get what it may read")
    assert not [m for m in dash.messages if m[0] == "gate/hall/tickets" or m[0].endswith("/scan")], dash.messages
    assert dash.publish("gate/hall/house/eve/inside", b"999").value == NOT_AUTHORIZED
    assert dash.publish("gate/hall/dashboard/scan", pack_scan(scan_event("D", gate="dashboard"))).value \
        == NOT_AUTHORIZED
    # The box office writes only the list.
    assert box.publish("gate/hall/door-a/scan", pack_scan(scan_event("B"))).value == NOT_AUTHORIZED
    # Connecting as door-a with another party's credentials does not take over door-a.
    imposter = V5(out, b.port, "dashboard", client_id="door-a")
    assert imposter.connack.value == 0
    assert imposter.publish("gate/hall/door-a/scan", pack_scan(scan_event("I"))).value == NOT_AUTHORIZED
    # A round trip on door-a's own connection after the imposter came: a takeover would have closed it.
    assert door_a.publish("gate/hall/door-a/status", json.dumps({"state": "online"}).encode()).value < 0x80
    assert not door_a.disconnects and door_a.c.is_connected()
    # door-a's name with a wrong password, no credentials at all, or no TLS: refused.
    for user, pw in (("door-a", "guess"), (None, None)):
        c = V5(out, b.port, user, pw)
        assert c.connack.is_failure, (user, c.connack)
        c.close()
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    plain.username_pw_set("door-a", password(out, "door-a"))
    with pytest.raises(Exception):
        plain.connect("localhost", b.port)
        plain.loop_read()
        plain.loop_read()
        assert False, "spoke MQTT without TLS"
    for c in (box, door_a, dash, imposter):
        c.close()


def test_broker_identity_config_is_idempotent_and_checked(tmp_path):
    out = tmp_path / "conf"
    args = ["broker", "config", "--venue", "hall", "--out", str(out), "--host", "localhost"]
    assert run_gate_cli(*args, "--gates", "door-a").returncode == 0
    ca, pw = (out / "ca.crt").read_bytes(), password(out, "door-a")
    r = run_gate_cli(*args, "--gates", "door-a,door-b")
    assert r.returncode == 0 and "new password for door-b" in r.stdout and "door-a:" not in r.stdout
    assert (out / "ca.crt").read_bytes() == ca and password(out, "door-a") == pw
    acl = (out / "acl").read_text()
    assert "user door-b\n" in acl and "topic write gate/hall/door-b/scan" in acl
    passwd = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert set(passwd) == {"door-a", "door-b", "house", "house-standby", "boxoffice", "dashboard"}
    assert all(h.startswith("$7$101$") for h in passwd.values())
    assert stat.S_IMODE(os.stat(out / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "users" / "door-a.password").st_mode) == 0o600
    for bad in (["--gates", "door a"], ["--gates", "house"], ["--gates", "x+y"], ["--venue", "hall/#"]):
        r = run_gate_cli(*args, *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)


def test_broker_identity_installer_configures_the_broker_on_the_house(tmp_path):
    import subprocess

    from tests.conftest import REPO
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "house", "--prefix",
                        str(tmp_path / "opt"), "--venue", "hall", "--gates", "door-a,door-b",
                        "--broker-host", "house.local"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (f"{tmp_path}/opt/.venv/bin/gate broker config --out /etc/mosquitto/gate --gates door-a,door-b "
            "--venue hall --host house.local --host localhost") in r.stdout
    assert "ln -sfn /etc/mosquitto/gate/gate.conf /etc/mosquitto/conf.d/gate.conf" in r.stdout
    assert "systemctl restart mosquitto" in r.stdout
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "both", "--prefix",
                        str(tmp_path / "opt"), "--gates", "door-b"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if not os.path.exists("/etc/gate/gate.toml"):   # a fresh box: the example gate.toml would be installed
        assert "broker config --out /etc/mosquitto/gate --gates door-b,door-a " in r.stdout   # its own gate
        assert "would set [mqtt] in /etc/gate/gate.toml to localhost:8883, TLS, user door-a" in r.stdout
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "gate", "--prefix",
                        str(tmp_path / "opt")], capture_output=True, text=True)
    assert r.returncode == 0 and "broker config" not in r.stdout
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "house", "--no-broker",
                        "--prefix", str(tmp_path / "opt")], capture_output=True, text=True)
    assert r.returncode == 0 and "broker config" not in r.stdout


def test_broker_identity_config_check_warns_when_a_gate_logs_in_as_someone_else(tmp_path):
    p = tmp_path / "g.toml"
    base = '[gate]\nid = "door-a"\nvenue = "hall"\nevents = ["eve"]\n[mqtt]\nusername = "{user}"\n'
    p.write_text(base.format(user="door-b"))
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 0 and "warning: mqtt.username = 'door-b' is not gate.id 'door-a'" in r.stderr, r.stderr
    p.write_text(base.format(user="door-a"))
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_broker_refuses_messages_larger_than_a_ticket_list(venue):
    """A gate credential cannot push a 20 MB message through the broker to the house and every gate."""
    out, b = venue
    gate = V5(out, b.port, "door-a")
    watcher = V5(out, b.port, "door-b")
    watcher.subscribe("gate/hall/door-a/scan")
    gate.c.publish("gate/hall/door-a/scan", b"\0" * (20 * 1024 * 1024), qos=1)
    wait_for(lambda: gate.disconnects, 15, what="the broker dropping the oversized publisher")
    gate.close()                                       # (no automatic reconnect sending it again)
    small = V5(out, b.port, "door-a")                  # the gate itself can come back at once
    assert not small.publish("gate/hall/door-a/status", b'{"state":"online"}').is_failure
    # A marker on the same topic after the big one: once the watcher has it, the big one would be there.
    assert not small.publish("gate/hall/door-a/scan", pack_scan(scan_event("MARK"))).is_failure
    wait_for(lambda: [m for m in watcher.messages if len(m[1]) < 1000], what="the marker at the watcher")
    assert not [m for m in watcher.messages if len(m[1]) > 1_000_000]
