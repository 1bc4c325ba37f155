"""The box office as a party of its own, and commands that confirm their effect: a real Mosquitto
running exactly what `gate broker config` writes (TLS, a user per party, the shipped ACL), real
`gate scan` processes fed by a serial scanner (a pseudo-terminal), a real `gate house`."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from gate.bus.broker import free_port
from gate.config import parse
from gate.house.build import build_house
from gate.link import GateLink
from gate.state.outbox import Outbox
from tests.conftest import TICKETS_CSV, run_gate_cli, wait_for, wait_house_active
from tests.venue_broker import V5, SerialGate, party_mqtt, start_venue_broker

pytest.importorskip("serial", reason="the gates read codes from a serial scanner (pip install 'gate[serial]')")


class Venue:
    """A venue's broker as `gate broker config` writes it, and each party's config file for it."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.keys = tmp_path / "keys"
        self.out, self.broker = start_venue_broker(tmp_path)
        self.port = self.broker.port
        self.listen = f"127.0.0.1:{free_port()}"

    def mqtt(self, user, port=None) -> str:
        return party_mqtt(self.out, port or self.port, user)

    def write(self, name, text):
        p = self.tmp / f"{name}.toml"
        p.write_text(text)
        return p

    def boxoffice(self, venue="hall", roster=True, name="boxoffice", user="boxoffice", port=None):
        return self.write(name, f'[boxoffice]\nvenue = "{venue}"\nwait_s = 20\n'
                                f'roster = "{self.out / "roster.json" if roster else ""}"\n'
                                + self.mqtt(user, port) + f'[storage]\ndir = "{self.tmp / "boxoffice-state"}"\n'
                                f'[signing]\nlist_signing_key = "{self.keys / "boxoffice.key"}"\n'
                                f'staff_key = "{self.keys / "staff.key"}"\nvenue_secret = "{self.keys / "venue.secret"}"\n')

    def receiving(self) -> str:
        """The [signing] of a gate or the house: the box office's public keys and the venue secret."""
        return (f'[signing]\nlist_keys = ["{self.keys / "boxoffice.pub"}"]\nstaff_keys = ["{self.keys / "staff.pub"}"]\n'
                f'venue_secret = "{self.keys / "venue.secret"}"\n')

    def house(self, port=None):
        return self.write("house", f'[house]\nvenue = "hall"\nlisten = "{self.listen}"\ncapacity = {{ "eve" = 100 }}\n'
                                   'client_id = "house-hall"\n' + self.mqtt("house", port)
                          + f'[storage]\ndir = "{self.tmp / "house-state"}"\n' + self.receiving())

    def gate(self, gid, port=None):
        return self.write(gid, f'[gate]\nid = "{gid}"\nvenue = "hall"\nevents = ["eve"]\n[decode]\ndebounce_s = 0.3\n'
                               '[feedback]\nled_red = 17\nled_green = 27\nled_blue = 22\nrelay = 24\n' + self.mqtt(gid, port)
                          + f'[storage]\ndir = "{self.tmp / ("state-" + gid)}"\n' + self.receiving())

    def api(self):
        with urllib.request.urlopen(f"http://{self.listen}/api/house", timeout=5) as r:
            return json.load(r)

    def log(self) -> str:
        return (self.broker.dir / "mosquitto.log").read_text(errors="replace")


@pytest.fixture
def venue(tmp_path):
    v = Venue(tmp_path)
    r = run_gate_cli("keys", "new", "-c", str(v.boxoffice()))   # the keys the box office's config names
    assert r.returncode == 0, r.stderr
    yield v
    v.broker.stop()


ENV = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")


def statuses(watch):
    """Each party's newest status as the dashboard user sees it."""
    out = {}
    for topic, payload, _ in list(watch.messages):
        if topic.endswith("/status") and payload:
            out[topic.split("/")[2]] = json.loads(payload)
    return out


def lines_of(stdout, party):
    return [line for line in stdout.splitlines() if line.strip().startswith(party + " ")]


@pytest.mark.slow
def test_boxoffice_venue_and_list_confirmed_by_real_gates_and_house(tmp_path, venue):
    """`--publish` reports the list applied by each gate; `gate venue test` then `live` switch every gate (their
    next scans are test, then live) and the house, each reported; a gate that is down is named, exit 1."""
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    box = venue.boxoffice()
    house = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(venue.house())], env=ENV,
                             stderr=subprocess.DEVNULL)
    gates = {g: SerialGate(venue.gate(g)) for g in ("door-a", "door-b")}
    watch = V5(venue.out, venue.port, "dashboard")
    watch.subscribe("gate/hall/+/status")
    try:
        wait_for(lambda: all(statuses(watch).get(p, {}).get("state") == "online" for p in ("house", "door-a", "door-b")),
                 60, what="the house and both gates online")
        r = run_gate_cli("tickets", "import", "-c", str(box), str(tickets), "--publish")
        assert r.returncode == 0, r.stdout + r.stderr
        series = statuses(watch)["door-a"]["ticket_list"]
        assert series.startswith("boxoffice-") and series.endswith("/1")
        for g in ("door-a", "door-b"):
            assert lines_of(r.stdout, g) and f"list {series}" in lines_of(r.stdout, g)[0], r.stdout
            assert "confirmed" in lines_of(r.stdout, g)[0]
        assert "confirmed by all 2" in r.stdout

        r = run_gate_cli("venue", "test", "-c", str(box))
        assert r.returncode == 0, r.stdout + r.stderr
        for party in ("house", "door-a", "door-b"):
            assert lines_of(r.stdout, party) and "test" in lines_of(r.stdout, party)[0], r.stdout
        assert "confirmed by all 3" in r.stdout
        assert gates["door-a"].present("CODE-0001")["mode"] == "test"

        time.sleep(1.1)   # a venue control message must be newer (whole seconds) than the last one applied
        r = run_gate_cli("venue", "live", "-c", str(box))
        assert r.returncode == 0, r.stdout + r.stderr
        for party in ("house", "door-a", "door-b"):
            line = lines_of(r.stdout, party)[0]
            assert " live " in line and line.endswith("confirmed"), r.stdout
        e = gates["door-a"].present("CODE-0001")   # its rehearsal use is gone: admitted, live
        assert (e["mode"], e["result"], e["reason"]) == ("live", "admitted", "ok")
        e = gates["door-b"].present("CODE-0002")
        assert (e["mode"], e["result"]) == ("live", "admitted")
        h = wait_for(lambda: (lambda h: h if h["events"] and h["events"][0]["admitted"] == 2 else None)(venue.api()),
                     20, what="the house counts the live entries")
        assert h["mode"] == "live" and not h["rehearsal"]

        # door-b goes down: both commands name it, say what to check, and exit 1
        gates["door-b"].stop()
        wait_for(lambda: statuses(watch)["door-b"]["state"] == "offline", what="door-b offline")
        time.sleep(1.1)
        r = run_gate_cli("venue", "test", "-c", str(box), "--wait", "3")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "confirmed" in lines_of(r.stdout, "door-a")[0] and "NOT" not in lines_of(r.stdout, "door-a")[0]
        assert "NOT CONFIRMED: offline" in lines_of(r.stdout, "door-b")[0], r.stdout
        assert "not confirmed by door-b (2 of 3 confirmed within 3 s" in r.stderr, r.stderr
        r = run_gate_cli("tickets", "import", "-c", str(box), str(tickets), "--publish", "--wait", "3")
        assert r.returncode == 1 and "not confirmed by door-b" in r.stderr, r.stdout + r.stderr
        assert "NOT" not in lines_of(r.stdout, "door-a")[0] and "/2" in lines_of(r.stdout, "door-a")[0], r.stdout
        assert "Traceback" not in r.stderr
    finally:
        watch.close()
        for g in gates.values():
            g.stop()
        house.send_signal(signal.SIGTERM)
        house.wait(15)


def test_boxoffice_refused_publishes_exit_nonzero_naming_user_and_topic(tmp_path, venue):
    """The broker refuses the box office's publish (a venue it has no rights in): both commands say so, exit 1."""
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    other = venue.boxoffice(venue="other", roster=False, name="other")
    r = run_gate_cli("venue", "live", "-c", str(other))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused user 'boxoffice' publishing to gate/other/control (Not authorized)" in r.stderr, r.stderr
    assert "confirm" not in r.stdout
    r = run_gate_cli("tickets", "import", "-c", str(other), str(tickets), "--publish")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused user 'boxoffice' publishing to gate/other/tickets (Not authorized)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # What the box office may read to confirm: every party's status, never the scans.
    from gate.bus.codec import pack_scan
    from tests.conftest import scan_event
    box, door = V5(venue.out, venue.port, "boxoffice"), V5(venue.out, venue.port, "door-a")
    try:
        box.subscribe("gate/hall/+/status")
        box.subscribe("gate/hall/+/scan")
        assert door.publish("gate/hall/door-a/scan", pack_scan(scan_event("S1"))).value < 0x80
        assert door.publish("gate/hall/door-a/status", b'{"state":"online"}', retain=True).value < 0x80
        wait_for(lambda: [m for m in box.messages if m[0] == "gate/hall/door-a/status"], what="a status")
        assert not [m for m in box.messages if m[0].endswith("/scan")]
        assert box.publish("gate/hall/door-a/status", b'{"state":"offline"}').value == 0x87
    finally:
        box.close()
        door.close()


def test_boxoffice_wrong_party_config_refused_before_the_broker(tmp_path, venue):
    """The house's or a gate's config to a box-office command: exit 2, naming the box office's config, and no
    connection is ever made (a broker on the configs' port would have been tried: exit 1)."""
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    nobody = free_port()
    configs = {"the house's": venue.house(port=nobody), "a gate's": venue.gate("door-a", port=nobody)}
    for whose, cfg in configs.items():
        for args in (["venue", "live", "-c", cfg, "--key", venue.keys / "staff.key"],
                     ["tickets", "import", "-c", cfg, tickets, "--publish"],
                     ["staff", "issue", "-c", cfg, "--name", "Jo", "--out", tmp_path / "cards"],
                     ["keys", "new", "-c", cfg]):
            r = run_gate_cli(*map(str, args))
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert f"{cfg} is {whose} config" in r.stderr and str(tmp_path / "boxoffice.toml") in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    box = venue.boxoffice(port=nobody)
    r = run_gate_cli("tickets", "import", "-c", str(box), str(tickets))
    assert r.returncode == 2 and "is not a gate's config" in r.stderr and "--publish" in r.stderr, r.stderr
    # a box-office config logged in as the house: refused by the config check
    r = run_gate_cli("venue", "live", "-c", str(venue.boxoffice(user="house", name="as-house", port=nobody)))
    assert r.returncode == 2 and "mqtt.username: 'house'" in r.stderr, r.stderr
    assert not (tmp_path / "cards").exists()
    # the right config gets as far as the broker (nothing there: exit 1, in words)
    r = run_gate_cli("venue", "live", "-c", str(box))
    assert r.returncode == 1 and f"nothing accepts connections on localhost:{nobody}" in r.stderr, r.stderr
    # and staff cards from the box office's own key
    r = run_gate_cli("staff", "issue", "-c", str(box), "--name", "Jo", "--action", "entry", "--out", tmp_path / "cards")
    assert r.returncode == 0 and (tmp_path / "cards" / "staff-Jo-entry.png").exists(), r.stderr


def _house(venue):
    cfg = venue.house()
    svc = build_house(parse(cfg.read_text(), str(cfg)))
    svc.start()
    wait_house_active(svc)   # its one reconnect after winning the election is over (the doctor test asserts it stays)
    return svc


def _scans(outbox, prefix, n):
    now = int(time.time() * 1000)
    for i in range(n):
        outbox.append("door-a", now + i, "eve", f"{prefix}{i}", "in", "admitted", "ok")


@pytest.mark.slow
def test_boxoffice_commands_while_the_house_is_down_lose_none_of_its_backlog(tmp_path, venue):
    """Scans queued for the house at the broker survive box-office commands run meanwhile (they never
    take the house's id); the same scans are lost when something connects as the house with a clean session."""
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    box = venue.boxoffice()
    gcfg = venue.gate("door-a")
    path = tmp_path / "door-a-outbox.db"
    outbox = Outbox(path)
    link = GateLink(parse(gcfg.read_text(), str(gcfg)), path, profile="turnstile")
    link.start()
    house = _house(venue)
    try:
        assert link.connected.wait(10)
        # while the house runs, a box-office command does not push it off the broker
        r = run_gate_cli("venue", "test", "-c", str(box), "--wait", "5")
        assert "house" in r.stdout and "test" in lines_of(r.stdout, "house")[0], r.stdout + r.stderr
        assert house.connected.is_set() and "closing old connection" not in venue.log()
        house.close()
        _scans(outbox, "Q", 20)   # queued for the house's persistent session while it is down
        wait_for(lambda: outbox.depth() == 0, what="acknowledged by the broker")
        r = run_gate_cli("tickets", "import", "-c", str(box), str(tickets), "--publish", "--wait", "2")
        assert "published 7 tickets" in r.stdout, r.stdout + r.stderr
        time.sleep(1.1)
        r = run_gate_cli("venue", "live", "-c", str(box), "--wait", "2")
        assert r.returncode == 1 and "NOT CONFIRMED: offline" in lines_of(r.stdout, "house")[0], r.stdout
        house = _house(venue)
        wait_for(lambda: house.api()["events"] and house.api()["events"][0]["admitted"] == 20, 20,
                 what="every queued scan delivered to the house")
        assert house.api()["gates"][0]["missing"] == 0
        house.close()
        # The control: a client logging in as the house with a clean session (what `-c house.toml` did) wipes it.
        _scans(outbox, "W", 5)
        wait_for(lambda: outbox.depth() == 0, what="acknowledged by the broker")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anything", clean_session=True)
        c.tls_set(ca_certs=str(venue.out / "ca.crt"))
        c.username_pw_set("house", (venue.out / "users" / "house.password").read_text().strip())
        c.connect("localhost", venue.port)
        c.loop_start()
        wait_for(c.is_connected, what="the imposter session")
        c.disconnect()
        c.loop_stop()
        house = _house(venue)
        time.sleep(2)
        assert house.api()["events"][0]["admitted"] == 20, "the backlog wiped by a clean session as the house"
    finally:
        house.close()
        link.close(drain_s=0)
        outbox.close()



def test_boxoffice_each_kind_of_miss_is_named_with_what_to_check(tmp_path, broker, venue_keys):
    """Parties that are online but did not follow: each is named, with its own reason, and the command exits 1."""
    from gate.boxoffice.keys import new_keypair
    from tests.conftest import boxoffice_config, house_config, publish_retained
    staff, staff_pub = new_keypair(tmp_path / "keys", "staff")
    hcfg = house_config(tmp_path, broker.port, signing=f'[signing]\nstaff_keys = ["{staff_pub}"]\n')
    svc = build_house(hcfg)
    svc.start()
    later = 2 ** 31   # a control message applied after ours
    for gate, status in (
            ("door-old", {"mode": "entry", "venue_mode": "test", "venue_issued": 1000, "ticket_list": "house-1/9"}),
            ("door-card", {"mode": "test", "venue_mode": "live", "venue_issued": later}),
            ("door-newer", {"mode": "entry", "venue_mode": "test", "venue_issued": later}),
            ("door-ancient", {"profile": "turnstile", "version": "0.9"})):
        publish_retained(broker.port, f"gate/hall/{gate}/status", json.dumps({"state": "online", **status}).encode())
    publish_retained(broker.port, "gate/hall/door-junk/status", b"{not json")
    box = boxoffice_config(tmp_path, broker.port, signing=venue_keys.signing_toml(publisher=True))
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    try:
        assert svc.connected.wait(10)
        r = run_gate_cli("venue", "live", "-c", str(box), "--key", str(staff), "--wait", "2")
        assert r.returncode == 1, r.stdout + r.stderr
        said = {p: lines_of(r.stdout, p)[0] for p in ("house", "door-old", "door-card", "door-newer", "door-ancient")}
        assert said["house"].endswith("confirmed") and "NOT" not in said["house"], r.stdout
        assert "did not apply this message" in said["door-old"] and "staff_keys" in said["door-old"]
        assert "own mode is rehearsal" in said["door-card"]
        assert "a newer switch (to test)" in said["door-newer"]
        assert "update its gate software" in said["door-ancient"]
        assert "not confirmed by door-ancient, door-card, door-newer, door-old (1 of 5" in r.stderr, r.stderr
        assert not lines_of(r.stdout, "door-junk")   # no gate status that can be read: not taken for a gate
        r = run_gate_cli("tickets", "import", "-c", str(box), str(tickets), "--publish", "--wait", "2")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "list house-1/9" in lines_of(r.stdout, "door-old")[0] and "list_keys" in lines_of(r.stdout, "door-old")[0]
        assert "reports no signed list" in lines_of(r.stdout, "door-card")[0]
    finally:
        svc.close()


def test_boxoffice_a_second_command_at_once_ends_the_first_in_words_without_a_tug_of_war(tmp_path, venue):
    """Both are the user `boxoffice` to the broker, which keeps the newer: the older says so (exit 1 in a
    command) and never reconnects to push the newer off in turn."""
    from gate.bus.client import BusError
    from gate.bus.publisher import BusSession
    cfg = parse(venue.boxoffice().read_text(), "boxoffice.toml")
    first = BusSession(cfg.mqtt, "boxoffice-hall-1").open()
    second = BusSession(cfg.mqtt, "boxoffice-hall-2").open()
    try:
        with pytest.raises(BusError, match="closed the connection while waiting for answers.*user 'boxoffice'"):
            first.wait_change(first.received, 5)
        time.sleep(2.5)   # longer than a client's reconnect delay (1 s)
        second.publish("gate/hall/control", b"", retain=True)   # still connected: acknowledged
        assert venue.log().count("Client boxoffice already connected") == 1
    finally:
        first.close()
        second.close()


def test_boxoffice_doctor_never_takes_over_a_running_house_or_empties_its_backlog(tmp_path, venue):
    """`gate doctor -c house.toml` on the house's own box: it reaches the broker (TLS, MQTT) without
    logging in as `house`, so the running house stays connected and a backlog queued while it is down
    survives a doctor run."""
    path = tmp_path / "door-a-outbox.db"
    gcfg = venue.gate("door-a")
    outbox = Outbox(path)
    link = GateLink(parse(gcfg.read_text(), str(gcfg)), path, profile="turnstile")
    link.start()
    house = _house(venue)
    try:
        assert link.connected.wait(10)
        r = run_gate_cli("doctor", "-c", str(venue.house()))
        assert "OK   broker   reached broker localhost" in r.stdout and "not tried" in r.stdout, r.stdout + r.stderr
        assert house.connected.is_set() and "closing old connection" not in venue.log()
        house.close()
        _scans(outbox, "D", 7)
        wait_for(lambda: outbox.depth() == 0, what="acknowledged by the broker")
        r = run_gate_cli("doctor", "-c", str(venue.house()))
        assert "OK   broker" in r.stdout, r.stdout
        house = _house(venue)
        wait_for(lambda: house.api()["events"] and house.api()["events"][0]["admitted"] == 7, 20,
                 what="the backlog queued while the house was down, delivered after doctor ran")
    finally:
        house.close()
        link.close(drain_s=0)
        outbox.close()
