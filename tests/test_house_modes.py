"""The house side of modes and of the automatic check-out: a real Mosquitto, a real house."""

import itertools
import time

from gate.bus.codec import pack_scan, unpack_scan
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house.build import build_house
from tests.conftest import api, eve, house_config, publish_raw, wait_for

_seq = itertools.count(1)


def scan_event(ticket, gate="door-a", ts=None, result="admitted", reason="ok", mode="live"):
    n = next(_seq)
    return ScanEvent(id=f"{gate}-{ticket}-{n}", gate=gate, seq=n, ts=ts or int(time.time() * 1000), event="eve",
                     ticket=ticket, dir="out" if result == "exited" else "in", result=result, reason=reason,
                     mode=mode)


def hhmm(offset_min: float) -> str:
    return time.strftime("%H:%M", time.localtime(time.time() + offset_min * 60))


def test_house_modes_rehearsal_and_lookups_never_counted(broker, house):
    live = [scan_event("L1"), scan_event("L2")]
    test = [scan_event("L1", mode="test"), scan_event("R2", mode="test"),
            scan_event("R3", mode="test", result="rejected", reason="unknown")]
    info = [scan_event("L2", mode="info", result="rejected", reason="already_used")]
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in live + test + info])
    h = wait_for(lambda: (lambda h: h if h["lookups"] and h["rehearsal"] else None)(api(house.cfg)),
                 what="all modes seen")
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 2, what="live counted")
    h = api(house.cfg)
    assert (eve(h)["admitted"], eve(h)["inside"], eve(h)["rejected"]) == (2, 2, 0)
    [r] = h["rehearsal"]
    assert (r["event"], r["admitted"], r["inside"], r["rejected"]) == ("eve", 2, 2, 1)
    assert h["lookups"] == {"eve": 1}
    rows = house.attendance()
    assert sorted(r["ticket"] for r in rows) == ["L1", "L2"]   # the export for the CRM: live only


def test_house_modes_survive_a_restart(tmp_path, broker):
    cfg = house_config(tmp_path, broker.port)
    svc = build_house(cfg)
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    publish_raw(broker.port, "gate/hall/door-a/scan",
                [pack_scan(scan_event("A")), pack_scan(scan_event("B", mode="test"))])
    wait_for(lambda: api(cfg)["rehearsal"] and eve(api(cfg))["admitted"] == 1, what="both seen")
    svc.close()
    again = build_house(cfg)
    try:
        assert again.state.counts.snapshot("eve")["admitted"] == 1 and again.state.rehearsal.snapshot("eve")["admitted"] == 1
    finally:
        again.close()


def test_house_mode_codec_rejects_unknown_modes():
    import msgpack
    import pytest

    from gate.core.errors import PayloadError
    e = scan_event("X", mode="test")
    assert unpack_scan(pack_scan(e)).mode == "test"
    assert "mode" not in msgpack.unpackb(pack_scan(scan_event("X")))   # live stays as it was on the wire
    for bad in ("rehearsal", "", 1, None, "live\x00", "#"):
        obj = msgpack.unpackb(pack_scan(e))
        obj["mode"] = bad
        with pytest.raises(PayloadError):
            unpack_scan(msgpack.packb(obj))


def test_house_checkout_counts_everyone_still_inside_as_left(tmp_path, broker):
    text = house_config(tmp_path, broker.port).path
    cfg_text = open(text).read().replace('client_id = "house-hall"', f'client_id = "house-hall"\ncheckout = "{hhmm(-60)}"')
    open(text, "w").write(cfg_text)
    cfg = parse(cfg_text, text)
    now = int(time.time() * 1000)
    early = [scan_event(t, ts=now - 2 * 3600_000) for t in ("C1", "C2", "C3")]
    left = scan_event("C3", ts=now - 100 * 60_000, result="exited", reason="exit")
    later = scan_event("C4", ts=now - 10 * 60_000)
    svc = build_house(cfg)
    svc.start()
    try:
        wait_for(svc.connected.is_set, what="house connected")
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in early + [left, later]])
        h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 4 and eve(h)["inside"] == 1 else None)(api(cfg)),
                     what="check-out applied")
        # C1 and C2 were checked out; C3 had left by itself; C4 came after the check-out
        assert eve(h)["exited"] == 3 and eve(h)["by_gate"]["checkout"] == {"exited": 2}
        # an entry from before the check-out that arrives late is checked out too
        publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(scan_event("C5", gate="door-b",
                                                                                 ts=now - 3 * 3600_000))])
        wait_for(lambda: eve(api(cfg))["admitted"] == 5 and eve(api(cfg))["exited"] == 4, what="late entry checked out")
        assert eve(api(cfg))["inside"] == 1
    finally:
        svc.close()
    again = build_house(cfg)   # a restart applies nothing twice
    try:
        again.intake.apply_checkout()
        snap = again.state.counts.snapshot("eve")
        assert (snap["admitted"], snap["exited"], snap["inside"]) == (5, 4, 1)
    finally:
        again.close()


def staff_house(tmp_path, broker):
    from gate.boxoffice.keys import new_keypair
    kp, pp = new_keypair(tmp_path / "keys", "staff")
    new_keypair(tmp_path / "keys", "intruder")
    path = house_config(tmp_path, broker.port).path
    text = open(path).read() + f'\n[signing]\nstaff_keys = ["{pp}"]\n'
    open(path, "w").write(text)
    return parse(text, path), kp


def test_house_venue_live_clears_the_rehearsal(tmp_path, broker):
    import paho.mqtt.client as mqtt

    from gate.boxoffice.keys import load_private_key
    from gate.boxoffice.staff import sign_control
    from tests.conftest import boxoffice_config, run_gate_cli
    cfg, kp = staff_house(tmp_path, broker)
    svc = build_house(cfg)
    svc.start()
    try:
        wait_for(svc.connected.is_set, what="house connected")
        box = str(boxoffice_config(tmp_path, broker.port))
        r = run_gate_cli("venue", "test", "-c", box, "--key", str(kp), "--by", "stage manager")
        assert r.returncode == 0 and "test: confirmed by all 1" in r.stdout, r.stdout + r.stderr
        rehearsal_issued = int(time.time())   # control messages are stamped in whole seconds
        wait_for(lambda: api(cfg)["mode"] == "test", what="venue in rehearsal")
        publish_raw(broker.port, "gate/hall/door-a/scan",
                    [pack_scan(scan_event(t, mode="test")) for t in ("R1", "R2", "R3")])
        wait_for(lambda: api(cfg)["rehearsal"] and api(cfg)["rehearsal"][0]["admitted"] == 3, what="rehearsal seen")
        recorded = open_control(broker.port)
        wait_for(lambda: int(time.time()) > rehearsal_issued, 2, what="a second later (the next must be newer)")
        r = run_gate_cli("venue", "live", "-c", box, "--key", str(kp))
        assert r.returncode == 0 and "cleared" in r.stdout, r.stderr
        wait_for(lambda: api(cfg)["mode"] == "live" and not api(cfg)["rehearsal"], what="rehearsal cleared")
        assert svc.log.db.execute("SELECT count(*) FROM scans WHERE mode='test'").fetchone()[0] == 0
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("R1"))])
        wait_for(lambda: eve(api(cfg))["admitted"] == 1, what="live scan counted")
        # hostile control messages: a replay of the recorded rehearsal switch, another key, junk
        intruder = load_private_key(tmp_path / "keys" / "intruder.key")
        for junk in (recorded, sign_control(intruder, "hall", "x", "test", int(time.time()) + 5), b"\xff" * 40,
                     b"GC1:" + b"0" * 5000, b"GC1:%%%", b"", b"\x00"):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            c.publish("gate/hall/control", junk, qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()
        wait_for(lambda: svc.venue_mode.refused >= 6, what="junk refused")
        h = api(cfg)
        assert h["mode"] == "live" and eve(h)["admitted"] == 1 and not h["rehearsal"]
    finally:
        svc.close()


def open_control(port):
    """The retained control message as a late subscriber gets it."""
    from tests.conftest import Collector
    col = Collector(port, "gate/hall/control")
    try:
        return wait_for(lambda: col.on("gate/hall/control"), what="retained control")[-1]
    finally:
        col.close()
