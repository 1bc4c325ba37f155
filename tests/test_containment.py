"""Containment of a stolen door: `gate broker revoke` on a real Mosquitto running the configuration
`gate broker config` wrote, and the house setting a gate's reports aside and taking them back."""

import datetime
import json
import sqlite3

import pytest

from gate.bus.broker import free_port
from gate.bus.brokerconf import write_config
from gate.bus.codec import pack_scan
from gate.house import uploads
from gate.house.build import build_house
from gate.house.log import AttendanceLog
from gate.house.setaside import parse_since, set_aside, take_back
from tests.conftest import api, eve, house_config, publish_raw, run_gate_cli, wait_for
from tests.test_word import forged, now_ms
from tests.venue_broker import V5, VenueBroker, password


@pytest.fixture
def configured(tmp_path):
    """A real Mosquitto running the configuration `gate broker config` writes (door-a, door-b, a dashboard)."""
    port = free_port()
    out = tmp_path / "broker-conf"
    write_config(out, "hall", ["door-a", "door-b"], ["dashboard"], ["localhost"], port, "127.0.0.1")
    b = VenueBroker(tmp_path / "broker-data", out)
    b.port = port
    b.start()
    yield out, b
    b.stop()


def test_containment_revoke_removes_the_credential_and_the_broker_refuses_it(tmp_path, configured):
    out, b = configured
    old = password(out, "door-b")
    door_b = V5(out, b.port, "door-b", client_id="door-b")
    door_a = V5(out, b.port, "door-a", client_id="door-a")
    assert door_b.connack.value == 0 and door_a.connack.value == 0
    r = run_gate_cli("broker", "revoke", "door-b", "--out", str(out), "--pid", str(b.proc.pid))
    assert r.returncode == 0, r.stderr
    assert "refuses door-b" in r.stdout and "Traceback" not in r.stderr
    # The files: no password line, no ACL user, not in the roster, no password file.
    assert not [x for x in (out / "passwd").read_text().splitlines() if x.startswith("door-b:")]
    assert "user door-b\n" not in (out / "acl").read_text() and "user door-a\n" in (out / "acl").read_text()
    assert not (out / "users" / "door-b.password").exists()
    # The broker: door-b's open connection was closed by the reload, and it cannot come back.
    wait_for(lambda: door_b.disconnects, what="door-b's connection closed by the reload")
    again = V5(out, b.port, "door-b", old, client_id="door-b")
    assert again.connack.is_failure, again.connack
    again.close()
    # Everyone else carries on.
    assert door_a.c.is_connected() and not door_a.disconnects
    assert door_a.publish("gate/hall/door-a/scan", pack_scan(forged("A1", 1, now_ms(), gate="door-a"))).value < 0x80
    # A later `gate broker config` (the same command line from the shell history) does not bring the old
    # password back: door-b comes back only with a new one.
    r = run_gate_cli("broker", "config", "--venue", "hall", "--out", str(out), "--gates", "door-a,door-b",
                     "--host", "localhost", "--port", str(b.port), "--bind", "127.0.0.1")
    assert r.returncode == 0 and "new password for door-b" in r.stdout
    assert password(out, "door-b") != old
    door_a.close()
    door_b.close()


def test_containment_revoke_that_cannot_take_effect_says_so(tmp_path, configured):
    out, b = configured
    # A pid that is no broker: the files change, but the broker still accepts door-a: exit 1, said why.
    r = run_gate_cli("broker", "revoke", "door-a", "--out", str(out), "--pid", "999999")
    assert r.returncode == 1 and "was not reloaded" in r.stderr and "Traceback" not in r.stderr
    # A name this directory never configured: bad usage, nothing changed.
    before = (out / "passwd").read_text()
    r = run_gate_cli("broker", "revoke", "door-q", "--out", str(out), "--pid", str(b.proc.pid))
    assert r.returncode == 2 and "not a gate, dashboard or bridge" in r.stderr
    assert (out / "passwd").read_text() == before


def test_containment_set_aside_and_take_back_change_the_counts(tmp_path, broker, house):
    now = now_ms()
    publish_raw(broker.port, "gate/hall/door-a/scan",
                 [pack_scan(forged(f"A{i}", i + 1, now - (10 - i) * 1000, gate="door-a")) for i in range(10)])
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 10, what="door-a's ten counted")
    since = datetime.datetime.now().time().isoformat(timespec="milliseconds")   # HH:MM:SS.mmm, today
    publish_raw(broker.port, "gate/hall/door-x/scan",
                 [pack_scan(forged(f"X{i}", i + 1, now - (5 - i) * 1000)) for i in range(5)])
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 15, what="door-x's five counted")
    r = run_gate_cli("house", "-c", house.cfg.path, "set-aside", "door-x", "--since", since)
    assert r.returncode == 0, r.stderr
    assert "5 so far" in r.stdout
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 10 else None)(api(house.cfg)), 5,
                 what="the house recounts without door-x")
    x = next(g for g in h["gates"] if g["gate"] == "door-x")
    assert x["set_aside_since"] == parse_since(since) and x["set_aside_events"] == 5
    assert eve(h)["reports_set_aside"] == 5 and eve(h)["inside"] == 10
    assert any(a["kind"] == "security" and a["gate"] == "door-x" for a in h["alarms"])
    # What door-x sends from now on is kept and set aside too.
    publish_raw(broker.port, "gate/hall/door-x/scan", [pack_scan(forged("X9", 9, now))])
    wait_for(lambda: eve(api(house.cfg))["reports_set_aside"] == 6, what="a later report set aside as well")
    assert eve(api(house.cfg))["admitted"] == 10
    assert house.log.db.execute("SELECT count(*) FROM scans WHERE gate='door-x'").fetchone()[0] == 6   # kept
    # The export for the box office leaves them out as well.
    r = run_gate_cli("house", "-c", house.cfg.path, "export", "--format", "json")
    assert r.returncode == 0 and '"X0"' not in r.stdout and '"A0"' in r.stdout
    r = run_gate_cli("house", "-c", house.cfg.path, "set-aside", "door-x", "--undo")
    assert r.returncode == 0 and "6 report(s) taken back" in r.stdout, r.stderr
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 16 else None)(api(house.cfg)), 5,
                 what="door-x's reports counted again")
    assert eve(h)["reports_set_aside"] == 0 and not [a for a in h["alarms"] if a["gate"] == "door-x"]
    # Nothing to take back, and a bad time: said so.
    r = run_gate_cli("house", "-c", house.cfg.path, "set-aside", "door-x", "--undo")
    assert r.returncode == 1 and "not set aside" in r.stderr
    r = run_gate_cli("house", "-c", house.cfg.path, "set-aside", "door-x", "--since", "teatime")
    assert r.returncode == 2 and "--since" in r.stderr and "Traceback" not in r.stderr


def test_containment_set_aside_takes_scans_off_the_pretix_queue_and_back(tmp_path):
    log = AttendanceLog(tmp_path / "house.db")
    log.db.executescript(uploads.SCHEMA)
    log.on_store = uploads.enqueue
    now = now_ms()
    log.add([forged("A1", 1, now, gate="door-a"), forged("X1", 1, now), forged("X2", 2, now)])
    queued = lambda: sorted(t for (t,) in log.db.execute("SELECT ticket FROM pretix_uploads WHERE state='queued'"))
    assert queued() == ["A1", "X1", "X2"]
    log.db.execute("UPDATE pretix_uploads SET state='done' WHERE ticket='X1'")   # already reached pretix
    log.db.commit()
    r = set_aside(log.db, "door-x", now - 60_000)
    assert r == {"events": 2, "unqueued": 1, "uploaded": 1} and queued() == ["A1"]
    log.add([forged("X3", 3, now)])   # arrives while set aside: logged, not queued
    assert queued() == ["A1"] and log.db.execute("SELECT count(*) FROM scans").fetchone()[0] == 4
    r = take_back(log.db, "door-x", uploads.enqueue)
    assert r["events"] == 3 and queued() == ["A1", "X2", "X3"]
    assert log.db.execute("SELECT state FROM pretix_uploads WHERE ticket='X1'").fetchone()[0] == "done"
    log.close()
    db = sqlite3.connect(tmp_path / "house.db")
    assert [a for (a,) in db.execute("SELECT action FROM set_aside_log ORDER BY rowid")] == ["set aside", "taken back"]
    db.close()


def test_containment_what_does_not_count_stays_so_after_a_restart(tmp_path, broker):
    cfg = house_config(tmp_path, broker.port)
    house = build_house(cfg)
    house.start()
    try:
        wait_for(house.connected.is_set, what="house connected")
        now = now_ms()
        publish_raw(broker.port, "gate/hall/door-x/scan",   # 300 in the same second: 180 beyond the lane
                     [pack_scan(forged(f"X{i}", i + 1, now)) for i in range(300)])
        publish_raw(broker.port, "gate/hall/door-y/scan",
                     [pack_scan(forged(f"Y{i}", i + 1, now - (5 - i) * 1000, gate="door-y")) for i in range(5)])
        wait_for(lambda: eve(api(cfg))["admitted"] + eve(api(cfg))["implausible"] == 305, what="all stored")
        db = sqlite3.connect(house.log.path)   # as the command does: a connection of its own
        assert set_aside(db, "door-y", now - 3_600_000)["events"] == 5
        db.close()
        wait_for(lambda: eve(api(cfg))["admitted"] == 120, what="door-y set aside")
    finally:
        house.close()
    again = build_house(cfg, serve=False)   # the counts rebuilt from the attendance log alone
    try:
        h = again.api()
        e = next(e for e in h["events"] if e["event"] == "eve")
        assert (e["admitted"], e["implausible"], e["reports_set_aside"]) == (120, 180, 5)
        assert [a["gate"] for a in h["alarms"] if a["kind"] == "security"] == ["door-y"]
        assert h["word"]["set_aside"] == {"door-y": now - 3_600_000}
    finally:
        again.close()


def test_containment_revoke_on_a_core_with_bridges_keeps_every_other_party(tmp_path):
    from gate.bus.bridgeconf import add_bridge
    from gate.bus.brokerconf import BrokerConfigError
    from gate.bus.revoke import remove
    out = tmp_path / "core"
    write_config(out, "hall", ["door-a", "door-b"], ["dashboard"], ["localhost"], free_port(), "127.0.0.1")
    add_bridge(out, "hall", "north", ["n1", "n2"])
    before = (out / "acl").read_text()
    old = password(out, "door-a")
    assert remove(out, "door-a") == old   # what the check then connects with
    acl = (out / "acl").read_text()
    assert "user door-a\n" not in acl and "gate/hall/door-a/scan" not in acl
    # the blocks after door-a's still belong to their own users
    for user in ("door-b", "north", "house", "boxoffice", "dashboard"):
        block = before.split(f"user {user}\n", 1)[1].split("\nuser ", 1)[0].split("\n\n", 1)[0]
        assert f"user {user}\n{block}" in acl, user
    roster = json.loads((out / "roster.json").read_text())
    assert roster["gates"] == ["door-b"] and roster["bridges"] == {"north": ["n1", "n2"]}
    assert roster["revoked"] == ["door-a"]
    with pytest.raises(BrokerConfigError, match="entrance north"):
        remove(out, "n1")   # a gate behind a bridge is revoked at its entrance
    remove(out, "north")    # a stolen entrance broker: its bridge user goes
    assert "user north\n" not in (out / "acl").read_text()
    assert json.loads((out / "roster.json").read_text())["bridges"] == {}
