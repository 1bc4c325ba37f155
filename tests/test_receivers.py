"""Hostile messages on the bus, replayed against the real house and the real gate link
(a real Mosquitto): each is dropped and counted, the good messages beside it are kept,
and every queue a remote party can fill stays bounded."""

import json
import sqlite3
import time

import msgpack
import paho.mqtt.client as mqtt

from gate.bus import messages
from gate.bus.codec import pack_scan
from gate.house import gaps
from gate.house.build import build_house
from gate.link import RESEND_BURST, RESEND_RATE
from tests.conftest import (
    Collector,
    api,
    eve,
    house_config,
    publish_raw,
    scan_event,
    start_link,
    wait_for,
)
from tests.waits import wait_while_moving


def _raw(e, **over):
    return msgpack.packb({**msgpack.unpackb(pack_scan(e)), **over})


def _publisher(port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_receivers_overflowing_ts_among_a_thousand_good_events_costs_only_itself(broker, house):
    now = int(time.time() * 1000)   # stamped one a second, as a lane passes them (gate/core/lane.py)
    good = [pack_scan(scan_event(f"G{i}", id=f"good-{i}", ts=now - (1000 - i) * 1000)) for i in range(1000)]
    bombs = [_raw(scan_event("B1", id="bomb-1"), ts=2**64 - 1), _raw(scan_event("B2", id="bomb-2"), ts=-2**63),
             _raw(scan_event("B3", id="bomb-3"), seq=2**64 - 1), _raw(scan_event("B4", id="bomb-4"), seq=0),
             _raw(scan_event("B5", id="bomb-5"), ts=1)]
    payloads = good[:300] + bombs + good[300:]
    publish_raw(broker.port, "gate/hall/door-a/scan", payloads)
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 1000 else None)(api(house.cfg)), 20,
                 what="all 1000 good events")
    assert h["malformed"]["bad_ts"] == 3 and h["malformed"]["bad_seq"] == 2
    assert house.intake.alive   # (the bombs came before the last 700 good ones: all handled)
    assert house.log.db.execute("SELECT count(*) FROM scans").fetchone()[0] == 1000


def test_receivers_event_id_with_topic_wildcards_is_dropped_and_publishing_lives_on(tmp_path, broker):
    cfg = house_config(tmp_path, broker.port, "house-w")
    # An attendance log written before event ids were checked: a show called "Hamlet #2".
    svc = build_house(cfg)
    svc.log.db.execute("INSERT INTO scans (id, gate, seq, ts, event, ticket, dir, result, reason, attention, received) "
                   "VALUES ('old-1','door-a',1,?,'Hamlet #2','T9','in','admitted','ok','[]',0)",
                   (int(time.time() * 1000),))
    svc.log.db.commit()
    svc.close()
    col = Collector(broker.port, "gate/hall/house/#")
    svc = build_house(cfg)
    svc.start()
    try:
        wait_for(svc.connected.is_set)
        bad = [_raw(scan_event("W1", id=f"w-{i}"), event=name)
               for i, name in enumerate(("Hamlet #2", "a/b", "+", "nul\0", "x" * 129))]
        publish_raw(broker.port, "gate/hall/door-a/scan", bad + [pack_scan(scan_event("W2", id="fine"))])
        wait_for(lambda: eve(api(cfg))["admitted"] == 1, what="the good event counted")
        wait_for(lambda: col.on("gate/hall/house/eve/inside") and col.on("gate/hall/house/eve/inside")[-1] == b"1",
                 what="counts still published")
        assert api(cfg)["malformed"]["bad_field"] == 5
        assert svc.intake.alive
        assert not [t for t, _, _ in col.messages if "#" in t or "+" in t]
    finally:
        col.close()
        svc.close()


def test_receivers_three_hundred_fake_gates_with_huge_seqs_stay_bounded(broker, house, monkeypatch):
    monkeypatch.setattr(gaps, "GRACE_S", 0.5)   # gaps asked for after half a second instead of three
    c = _publisher(broker.port, "forger")
    now = int(time.time() * 1000)
    infos = []
    for i in range(300):
        e = scan_event(f"F{i}", gate=f"fake-{i}", id=f"fake-{i}", ts=now)
        e.seq = 2**53 - i
        infos.append(c.publish(f"gate/hall/fake-{i}/scan", pack_scan(e), qos=1))
        infos.append(c.publish(f"gate/hall/fake-{i}/status", json.dumps({"state": "online"}), qos=1))
    for i in infos:
        i.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("REAL", id="real-after"))])
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 301, 20, what="every event counted")
    h = api(house.cfg)
    assert len(h["gates"]) <= gaps.MAX_GATES and house.state.gaps.missing_total <= gaps.MAX_MISSING
    assert sum(house.state.gaps.missing(g) for g in house.state.gaps.gates) == house.state.gaps.missing_total
    assert h["limits"]["gaps_untracked"] > 0 and h["malformed"]["gates_over_cap"] > 0
    # At most ASK_BUDGET seqs a pass, a pass a second, however many gates owe some (20,000 here).
    col = Collector(broker.port, "gate/hall/+/resend")
    t0 = time.monotonic()

    def asked():
        with col.lock:
            return sum(len(json.loads(p)["seqs"]) for _, p, _ in col.messages)
    n = wait_for(lambda: (lambda n: n if n >= 2 * gaps.ASK_BUDGET else 0)(asked()), 20, what="two passes of asking")
    passes = int(time.monotonic() - t0) + 2   # those that can overlap the time we listened
    col.close()
    assert n <= passes * gaps.ASK_BUDGET, (n, passes)


def test_receivers_one_row_the_database_refuses_costs_only_itself(broker, house):
    house.log.db.execute("CREATE TRIGGER poison BEFORE INSERT ON scans WHEN NEW.ticket = 'POISON' "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    house.log.db.commit()
    payloads = [pack_scan(scan_event(f"P{i}", id=f"p-{i}")) for i in range(50)]
    payloads.insert(25, pack_scan(scan_event("POISON", id="poison")))
    publish_raw(broker.port, "gate/hall/door-a/scan", payloads)
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 50, what="the 50 good ones")
    assert api(house.cfg)["malformed"]["db_refused"] == 1


def test_receivers_resend_storm_is_capped_deduplicated_and_rate_limited(tmp_path, broker):
    outbox, link = start_link(tmp_path, "door-s", broker.port)
    try:
        now = int(time.time() * 1000)
        for i in range(3000):
            outbox.append("door-s", now, "eve", f"S{i}", "in", "admitted", "ok")
        wait_for(lambda: outbox.depth() == 0, 20, what="acknowledged")
        col = Collector(broker.port, "gate/hall/door-s/scan")
        c = _publisher(broker.port, "storm")
        t0 = time.monotonic()
        reqs = [messages.pack_resend(range(1 + (i % 6) * 500, 501 + (i % 6) * 500)) for i in range(200)]
        reqs += [b'{"seqs": [1e400]}', b'{"seqs": ' + b"[" * 100000 + b"]" * 100000 + b"}",
                 json.dumps({"seqs": list(range(1, 5000))}).encode(), b"\xff", json.dumps({"seqs": [2**64]}).encode()]
        for r in reqs:
            c.publish("gate/hall/door-s/resend", r, qos=1).wait_for_publish(5)
        # The five bad ones come last: once they are counted, every request has reached the link.
        wait_for(lambda: link.dropped.get("bad_resend") == 5 and link.resend_requests.empty()
                 and col.on("gate/hall/door-s/scan"), 20, what="the storm handled")
        c.disconnect()
        c.loop_stop()
        resent = len(col.on("gate/hall/door-s/scan"))
        elapsed = time.monotonic() - t0   # after the count: every resend counted was sent within it
        col.close()
        assert 0 < resent <= RESEND_BURST + RESEND_RATE * elapsed
        assert link.dropped["bad_resend"] == 5
        assert link.dropped.get("resend_busy", 0) + link.dropped.get("resend_rate", 0) \
            + link.dropped.get("resend_repeat", 0) > 0
        assert link._thread.is_alive() and link.resend_requests.qsize() <= 4
        # The link still does its real job.
        outbox.append("door-s", now, "eve", "AFTER", "in", "admitted", "ok")
        wait_for(lambda: outbox.depth() == 0, what="a new event still sent")
    finally:
        link.close()


def test_receivers_forged_admission_flood_is_rate_limited_before_the_scan_loop(tmp_path, broker):
    from gate.link import GateLink
    from tests.conftest import gate_config
    got = []
    cfg = gate_config(tmp_path, gate="door-q", port=broker.port, mqtt_on=True)
    link = GateLink(cfg, tmp_path / "q.db", profile="turnstile", on_remote_scan=got.append)
    link.start()
    wait_for(link.connected.is_set)
    try:
        c = _publisher(broker.port, "flood")
        t0 = time.monotonic()
        now = int(time.time() * 1000)
        infos = []
        for i in range(20000):
            e = scan_event(f"X{i}", gate="door-x", id=f"x{i}", ts=now)
            infos.append(c.publish("gate/hall/door-x/scan", pack_scan(e), qos=0))
        junk = [b"\xc1", b"\x91" * 4000, _raw(scan_event("J", gate="door-x"), ts=2**64 - 1)]
        for j in junk:
            c.publish("gate/hall/door-x/scan", j, qos=1).wait_for_publish(5)
        real = scan_event("REAL", gate="door-b", id="real-b")
        c.publish("gate/hall/door-b/scan", pack_scan(real), qos=1).wait_for_publish(5)
        # Behind 20,000 forged messages: on a loaded machine that takes a while, so wait while they move.
        wait_while_moving(lambda: any(e.id == "real-b" for e in got), lambda: len(got) + sum(link.dropped.values()),
                          what="a real gate's admission still arrives")
        elapsed = time.monotonic() - t0
        c.disconnect()
        c.loop_stop()
        from gate.link import REMOTE_GATE_BURST, REMOTE_GATE_RATE
        forged = [e for e in got if e.gate == "door-x"]
        assert len(forged) <= REMOTE_GATE_BURST + REMOTE_GATE_RATE * elapsed
        assert link.dropped["remote_rate"] > 0 and link.dropped["bad_ts"] == 1
        assert link.dropped["bad_msgpack"] >= 1
    finally:
        link.close()


def test_receivers_a_locked_attendance_log_holds_events_and_loses_none(broker, house, caplog):
    house.log.db.execute("PRAGMA busy_timeout = 300")   # each try gives up after 0.3 s, not SQLite's 5 s
    blocker = sqlite3.connect(house.cfg.storage.dir + "/house.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")   # another writer holds the log: the house's writes time out
    try:
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event(f"L{i}", id=f"l-{i}"))
                                                            for i in range(30)])
        wait_for(lambda: api(house.cfg)["limits"]["held_for_database"], 15, what="events held for the database")

        def refusals():
            return sum("attendance log refused" in r.getMessage() for r in caplog.records)
        # Each try waits out the busy timeout; the house tries again a second after a refusal.
        wait_for(lambda: refusals() >= 2, 20, what="the house trying again and refused again")
        assert eve(api(house.cfg))["admitted"] == 0 and house.intake.alive
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 30, 15, what="all 30 stored once the log is free")
    assert house.log.db.execute("SELECT count(*) FROM scans").fetchone()[0] == 30
    assert "db_refused" not in api(house.cfg)["malformed"]


def test_receivers_status_from_a_topic_no_gate_can_have_is_dropped(broker, house):
    publish_raw(broker.port, "gate/hall/door a\u00e9/status", [json.dumps({"state": "online"}).encode()])
    publish_raw(broker.port, "gate/hall/door-a/status", [json.dumps({"state": "online", "ts": 2**70}).encode()])
    wait_for(lambda: [g for g in api(house.cfg)["gates"] if g["gate"] == "door-a"], what="door-a listed")
    h = api(house.cfg)
    assert [g["gate"] for g in h["gates"]] == ["door-a"] and h["malformed"]["bad_topic"] == 1


def test_receivers_a_flood_of_made_up_performances_is_capped(broker, house, monkeypatch):
    from gate.house import ingest
    monkeypatch.setattr(ingest, "MAX_EVENTS", 20)
    publish_raw(broker.port, "gate/hall/door-a/scan",
                [msgpack.packb({**msgpack.unpackb(pack_scan(scan_event(f"M{i}", id=f"m-{i}"))), "event": f"show-{i}"})
                 for i in range(100)] + [pack_scan(scan_event("REAL", id="real-eve"))])
    wait_for(lambda: api(house.cfg)["malformed"].get("events_over_cap", 0) >= 80, what="made-up shows dropped")
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 1, what="the configured performance still counts")
    assert len(house.state.counts.events) <= 21


def test_receivers_refuse_reserved_event_ids_and_spoofing_ticket_text():
    """`status` is the house's own topic level; bidi overrides and C1 controls spoof dashboards and terminals."""
    import msgpack
    import pytest as _pytest

    from gate.bus.codec import unpack_scan
    from gate.core.clock import now_ms
    from gate.core.errors import PayloadError

    def scan(**kw):
        obj = {"v": 1, "id": "e1", "gate": "door-a", "seq": 1, "ts": now_ms(), "event": "eve", "ticket": "T1",
               "dir": "in", "result": "admitted", "reason": "ok", "attention": []}
        obj.update(kw)
        return msgpack.packb(obj)
    assert unpack_scan(scan()).ticket == "T1"
    assert unpack_scan(scan(ticket="Müller-7")).ticket == "Müller-7"
    for bad in ({"event": "status"}, {"ticket": "a\u202eb"}, {"ticket": "a\u2028b"}, {"ticket": "a\x9b1m"}):
        with _pytest.raises(PayloadError):
            unpack_scan(scan(**bad))


def test_receivers_a_gate_draining_its_outbox_reaches_every_other_gate(tmp_path, broker):
    """A gate back from an outage sends thousands of admissions at once: every one must reach the
    other doors' record of use (a dropped one is a ticket that works twice)."""
    from gate.link import GateLink
    from tests.conftest import gate_config
    got = []
    cfg = gate_config(tmp_path, gate="door-q", port=broker.port, mqtt_on=True)
    link = GateLink(cfg, tmp_path / "q.db", profile="turnstile", on_remote_scan=got.append)
    link.start()
    wait_for(link.connected.is_set)
    try:
        c = _publisher(broker.port, "door-a-draining")
        now = int(time.time() * 1000)
        infos = [c.publish("gate/hall/door-a/scan", pack_scan(scan_event(f"D{i}", gate="door-a", id=f"d{i}",
                                                                         ts=now - 3_600_000 + i)), qos=1)
                 for i in range(3000)]
        for info in infos:
            info.wait_for_publish(10)
        wait_while_moving(lambda: len(got) >= 3000, lambda: len(got),
                          what=lambda: f"all 3,000 drained admissions (dropped {link.dropped})")
        assert len(got) == 3000
        assert not link.dropped.get("remote_rate")
        c.disconnect()
        c.loop_stop()
    finally:
        link.close()
