"""One device per gate identity: two devices with one gate id and password (a cloned SD card)
against a real Mosquitto running exactly the configuration `gate broker config` writes
(TLS, a password per party, the ACL, use_username_as_clientid).

The broker hands the id's session to whichever connected last; under MQTT v5 the other is
told why (DISCONNECT 0x8E). Neither may go on admitting: each heard only part of the venue's
scans. They stop fighting over the session, latch a visible fault, keep deciding (as
look-ups), and the house flags the door."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from gate.bus.broker import PrivateBroker, free_port
from gate.bus.codec import pack_scan
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house.doors import DoorWatch
from gate.identity import TAKEOVER_FIRST_S
from gate.link import GateLink
from tests.conftest import GATE_TOML, TICKETS_CSV, run_gate_cli, wait_for
from tests.test_broker_identity import venue  # noqa: F401 (a fixture: the broker `gate broker config` writes)
from tests.venue_broker import V5, SerialGate, party_mqtt

pytest.importorskip("serial", reason="the gates read codes from a serial scanner here (pip install 'gate[serial]')")


def gate_toml(tmp_path, out, port, name, gate="door-a"):
    """A gate's config as `gate broker config` users would write it: TLS, its own user and password."""
    text = GATE_TOML.format(gate=gate, profile="turnstile", zones="[]", reentry="false", direction="in", port=port,
                            mqtt="true", passage="", passage_timeout=5.0, relay_mode="pulse", display="none",
                            keys="[]", stall=2.0, debounce=0.3, gate_extra="", list_keys="[]", venue_secret="",
                            storage=tmp_path / f"state-{name}")
    mqtt_section = party_mqtt(out, port, gate) + "\n"
    text = re.sub(r"\[mqtt\][^\[]*", lambda _: mqtt_section, text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    r = run_gate_cli("tickets", "import", "-c", str(path), str(tickets))
    assert r.returncode == 0, r.stderr
    return path


def house_process(tmp_path, out, port):
    listen = f"127.0.0.1:{free_port()}"
    path = tmp_path / "house.toml"
    path.write_text(f'[house]\nvenue = "hall"\nlisten = "{listen}"\ncapacity = {{ "eve" = 100 }}\n'
                    f'client_id = "house"\n' + party_mqtt(out, port, "house")
                    + f'[storage]\ndir = "{tmp_path / "state-house"}"\n')
    p = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)

    def api():
        with urllib.request.urlopen(f"http://{listen}/api/house", timeout=5) as r:
            return json.load(r)

    def up():
        try:
            return api()
        except OSError:
            return None
    wait_for(up, 30, what="the house answering")
    return p, api


def door(api, gate="door-a"):
    return next((g for g in api()["gates"] if g["gate"] == gate), {})


def takeovers(broker):
    """How often the broker closed a connection because another one logged in under its id."""
    log = (broker.dir / "mosquitto.log").read_text(errors="replace")
    return log.count("already connected, closing old connection")


@pytest.mark.slow
def test_identity_two_devices_under_one_gate_id_are_detected_and_admit_a_ticket_once(tmp_path, venue):  # noqa: F811
    out, b = venue
    one = gate_toml(tmp_path, out, b.port, "door-a-one")
    two = gate_toml(tmp_path, out, b.port, "door-a-two")
    house, api = house_process(tmp_path, out, b.port)
    gates = []
    try:
        a = SerialGate(one, scanning_within=30)
        gates.append(a)
        first = wait_for(lambda: door(api).get("instance"), 20, what="door-a's status at the house")
        v = a.present("CODE-0001")
        assert (v["result"], v["mode"], v.get("instance")) == ("admitted", "live", first)
        wait_for(lambda: any(e["event"] == "eve" and e["admitted"] == 1 for e in api()["events"]), 20,
                 what="the admission counted")
        assert not a.said("IDENTITY CLASH")

        # The copy of the card starts: both are told within seconds, and the house flags the door.
        t0 = time.monotonic()
        c = SerialGate(two, scanning_within=30)
        gates.append(c)
        wait_for(lambda: c.said("identity fault latched") and a.said("identity fault latched"), 30,
                 what="both devices see the other")
        wait_for(lambda: door(api).get("duplicate"), 30, what="the house flags door-a")
        detected = time.monotonic() - t0
        assert detected < 30, detected
        assert "another device" in a.said("IDENTITY CLASH")[0] and "door-a's identity" in a.said("IDENTITY CLASH")[0]
        assert a.said("reconnecting in") or c.said("reconnecting in"), "a lost session is not fought at once"
        assert set(door(api)["instances"]) >= {first}

        # The ticket used at the first device is not admitted at the copy, nor again at the first:
        # both decide what it would get and show it, as look-ups, and admit nobody.
        for g in (c, a):
            v = g.present("CODE-0001")
            assert v["mode"] == "info", v
        v = c.present("CODE-0002")
        assert v["mode"] == "info" and v["result"] == "admitted", v   # what it *would* get

        # No reconnect storm: they take the session from each other at a growing interval, not every second.
        n0, t1 = takeovers(b), time.monotonic()
        time.sleep(4 * TAKEOVER_FIRST_S)
        swaps = takeovers(b) - n0
        assert swaps <= 4, f"{swaps} takeovers in {time.monotonic() - t1:.0f} s"
        assert a.p.poll() is None and c.p.poll() is None
        eve = next(e for e in api()["events"] if e["event"] == "eve")
        assert eve["admitted"] == 1 and not eve["conflicts"], eve
    finally:
        for g in gates:
            g.stop()
        house.send_signal(signal.SIGTERM)
        house.wait(15)
    for g in gates:
        assert not g.said("Traceback"), "".join(g.log[-30:])
    # The operator's view: `gate doctor` names the fault and how to clear it; clearing it works.
    r = run_gate_cli("doctor", "-c", str(one))
    assert "FAIL identity" in r.stdout and "door-a's identity" in r.stdout, r.stdout
    r = run_gate_cli("doctor", "-c", str(one), "--clear-latch")
    assert r.returncode == 0 and "cleared" in r.stdout
    r = run_gate_cli("doctor", "-c", str(one))
    assert "OK   identity this device is instance" in r.stdout, r.stdout


def test_identity_a_takeover_by_a_tool_that_announces_nothing_is_not_a_second_device(tmp_path, venue):  # noqa: F811
    """`gate doctor` or a tool run with the gate's password takes the session over for a moment: logged,
    the gate comes back after a pause, nothing latched."""
    out, b = venue
    path = gate_toml(tmp_path, out, b.port, "door-a")
    cfg = parse(path.read_text(), str(path))
    clashes = []
    link = GateLink(cfg, tmp_path / "outbox.db", profile="turnstile", instance="0123456789ab",
                    on_clash=clashes.append)
    link.start()
    try:
        assert link.connected.wait(10)
        wait_for(lambda: link.identity._first_status is False, what="our own status seen")
        tool = V5(out, b.port, "door-a")   # clean start, no status: what `gate doctor` does
        wait_for(lambda: not link.connected.is_set(), what="the gate's session taken over")
        t0 = time.monotonic()
        tool.close()
        assert link.connected.wait(TAKEOVER_FIRST_S + 5), "the gate came back"
        if link.identity.takeovers:   # a broker that says 0x8E: the gate waited, then saw its own status
            assert time.monotonic() - t0 >= TAKEOVER_FIRST_S - 1.5, "it took the session back at once"
            wait_for(lambda: link.identity._taken_at is None, what="the takeover explained")
        wait_for(lambda: link.identity._first_status is False, what="the status found on reconnecting")
        time.sleep(0.5)
        assert not clashes and not link.identity.clash
    finally:
        link.close()


def test_identity_another_instance_scans_are_history_not_echo(tmp_path):
    """A scan under our own gate id from another instance is applied as another gate's (used-ticket sync)
    and is evidence of a second device; our own echo is neither."""
    b = PrivateBroker(tmp_path / "broker").start()
    try:
        cfg = parse(GATE_TOML.format(gate="door-a", profile="turnstile", zones="[]", reentry="false", direction="in",
                                     port=b.port, mqtt="true", passage="", passage_timeout=5.0, relay_mode="pulse",
                                     display="none", keys="[]", stall=2.0, debounce=0.3, gate_extra="",
                                     list_keys="[]", venue_secret="", storage=tmp_path / "state"), "door-a.toml")
        remote, clashes = [], []
        link = GateLink(cfg, tmp_path / "outbox.db", profile="turnstile", instance="aaaaaaaaaaaa",
                        on_remote_scan=remote.append, on_clash=clashes.append)
        link.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="other-device")
        pub.connect("127.0.0.1", b.port)
        pub.loop_start()
        try:
            assert link.connected.wait(10)
            now = int(time.time() * 1000)

            def scan(ticket, instance, seq):
                e = ScanEvent(id=f"{ticket}-{instance}", gate="door-a", seq=seq, ts=now, event="eve", ticket=ticket,
                              dir="in", result="admitted", reason="ok", instance=instance)
                pub.publish("gate/hall/door-a/scan", pack_scan(e), qos=1).wait_for_publish(5)
            scan("OWN", "aaaaaaaaaaaa", 7)          # our own, echoed back
            scan("OLD", "", 8)                       # ours from before instance ids (an old outbox row)
            scan("CLONE", "bbbbbbbbbbbb", 7)         # the other device's: same gate id, same seq
            wait_for(lambda: remote, what="the clone's scan handed on")
            time.sleep(0.3)
            assert [e.ticket for e in remote] == ["CLONE"] and remote[0].instance == "bbbbbbbbbbbb"
            assert clashes and "instance bbbbbbbbbbbb" in clashes[0] and "door-a's identity" in clashes[0]
        finally:
            pub.disconnect()
            pub.loop_stop()
            link.close()
    finally:
        b.stop()


def test_identity_house_tells_a_replaced_device_from_two_devices():
    """One change of instance on a door's status is a replaced device; a change back is two devices."""
    w = DoorWatch()
    st = {"state": "online", "mode": "entry", "venue_mode": "live", "duplicate": None, "out_of_order": None}
    t = int(time.time() * 1000) - 60_000
    w.status("door-a", {**st, "instance": "aaaaaaaaaaaa"}, ts=t)
    w.status("door-a", {**st, "instance": "aaaaaaaaaaaa"}, ts=t + 1000)   # a restart: same device
    w.status("door-a", {**st, "instance": "bbbbbbbbbbbb"}, ts=t + 2000)   # the Pi was replaced
    assert w.view("door-a", "live")["duplicate"] is None
    w.status("door-a", {**st, "instance": "aaaaaaaaaaaa"}, ts=t + 3000)   # ... and the old one is back
    assert "two devices" in w.view("door-a", "live")["duplicate"]
    # Two outboxes numbering in one sequence: both events kept, the clash counted.
    for inst, eid in (("aaaaaaaaaaaa", "x1"), ("aaaaaaaaaaaa", "x1"), ("bbbbbbbbbbbb", "y1")):
        w.scan(ScanEvent(eid, "door-a", 41, 1, "eve", "T1", "in", "admitted", "ok", instance=inst))
    assert w.view("door-a", "live")["seq_clashes"] == 1
    # A gate that says it itself is believed at once.
    w.status("door-b", {**st, "instance": "cccccccccccc", "duplicate": "another device is using door-b's identity"})
    assert w.view("door-b", "live")["duplicate"] == "another device is using door-b's identity"


def test_identity_watch_evidence_staleness_and_clearing():
    """What counts as another device, what is a device long gone, and that a cleared fault can latch again."""
    from gate.identity import STALE_STATUS_MS, IdentityWatch
    clashes = []
    w = IdentityWatch("door-a", "aaaaaaaaaaaa", clashes.append)
    now = int(time.time() * 1000)
    online = {"state": "online", "ts": now}
    w.connected()
    w.status({**online, "instance": "aaaaaaaaaaaa"})                        # our own: nothing
    w.status({**online, "instance": ""})                                    # ours from before instance ids
    w.status({**online, "instance": "bbbbbbbbbbbb", "ts": now - STALE_STATUS_MS - 60_000})   # long gone
    w.status({"state": "offline", "instance": "bbbbbbbbbbbb"})              # a will, without a takeover
    assert not clashes and not w.clash
    w.status({**online, "instance": "bbbbbbbbbbbb"})                        # online under our id right now
    assert clashes == ["another device (instance bbbbbbbbbbbb) is using door-a's identity"]
    w.status({**online, "instance": "cccccccccccc"})                        # latched once, said once
    assert len(clashes) == 1
    assert w.taken_over(told=False) == TAKEOVER_FIRST_S and w.taken_over(told=False) == 2 * TAKEOVER_FIRST_S
    w.follow(None)                                                          # a staff card cleared it
    assert not w.clash
    assert w.scan("aaaaaaaaaaaa") is False and w.scan("") is False          # our own scans
    assert w.scan("dddddddddddd") is True and len(clashes) == 2             # latches (and says so) again
    fresh = IdentityWatch("door-a", "aaaaaaaaaaaa")
    fresh.follow("another device is using door-a's identity")               # latched before a restart
    assert fresh.clash and fresh.taken_over(told=False) == TAKEOVER_FIRST_S

