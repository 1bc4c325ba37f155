"""A gate's word covers its own door (docs/contract.md): what a stolen gate credential sends
reaches the other doors and the house only as far as that gate's own entries go.

Attacks replayed on a real Mosquitto against real gates (scan loop, link, ticket store) and the
real house, as an attacker holding door-x's credential would send them."""

import threading
import time

import pytest

from gate.bus.codec import pack_scan
from gate.core import lane
from gate.core.events import RemoteScan, ScanEvent
from gate.house import gaps
from gate.house.gaps import GapTracker
from gate.link import GateLink
from gate.sim.render import compose
from gate.state.outbox import Outbox
from gate.state.remote import RemoteScans
from gate.state.tickets import TicketStore
from tests.conftest import api, eve, gate_config, publish_raw, run_scanner, wait_for
from tests.test_mqtt import EMPTY, RNG
from tests.test_receivers import _publisher

YEAR_MS = 365 * 86_400_000


def forged(ticket, seq, ts, result="admitted", gate="door-x", clock="ok", mode="live"):
    return ScanEvent(id=f"{gate}-{seq}-{result}-{time.monotonic_ns()}", gate=gate, seq=seq, ts=ts, event="eve",
                     ticket=ticket, dir="in", result=result,
                     reason={"admitted": "ok", "annulled": "not_passed", "exited": "exit"}[result],
                     clock=clock, mode=mode)


def now_ms():
    return int(time.time() * 1000)



# -- the record of use -----------------------------------------------------------------------

def test_word_ts1_admission_and_annulment_from_another_gate_leave_door_a_used(tmp_path, broker, mock_factory,
                                                                               tickets_csv):
    """door-a admits T1. door-x's credential then claims T1 at `ts = 1` (clock unsynced) and annuls that
    claim: T1 must stay used at door-a, first used at door-a, and door-a must refuse it again."""
    admitted_once = threading.Event()
    go = threading.Event()

    def shown_until(code, answers):
        """The code held up until the door has given `answers` verdicts (a loaded machine drops frames),
        at most 10 s; then empty frames."""
        for _ in range(300):
            if len(verdicts) >= answers:
                break
            yield code
        yield from [EMPTY] * 3

    def frames():
        code = compose("CODE-0001", "clean", rng=RNG)
        yield from [EMPTY] * 2
        yield from shown_until(code, 1)
        while not go.is_set():
            yield EMPTY
        yield from shown_until(code, 2)
        yield from [EMPTY] * 7
    verdicts: list = []
    cfg = gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True, debounce=0.2)
    s, th = run_scanner(cfg, frames(), mock_factory, tickets_csv)
    s.on_verdict = lambda v, w, e: (verdicts.append((v, e)), admitted_once.set())
    try:
        wait_for(admitted_once.is_set, 20, what="door-a admits T1")
        real_ts = verdicts[0][1].ts
        assert verdicts[0][0].reason == "ok"
        wait_for(s.link.connected.is_set, what="door-a connected")
        seen = TicketStore(cfg.storage.dir + "/tickets.db")   # door-a's files, read on a connection of our own
        # The forger: an admission stamped 1970 by an "unsynchronised" clock, then its annulment, then a
        # marker admission to know when door-a has applied both.
        publish_raw(broker.port, "gate/hall/door-x/scan",
                     [pack_scan(forged("T1", 1, 1, clock="unsynced"))], "door-x")
        publish_raw(broker.port, "gate/hall/door-x/scan",
                     [pack_scan(forged("MARK1", 2, now_ms()))], "door-x")
        wait_for(lambda: seen.history("MARK1").inside, what="door-a applied the forged admission")
        h = seen.history("T1")
        assert (h.first_gate, h.first_ts) == ("door-a", real_ts)   # not door-x at 1970
        publish_raw(broker.port, "gate/hall/door-x/scan",
                     [pack_scan(forged("T1", 3, 1, "annulled", clock="unsynced")),
                      pack_scan(forged("MARK2", 4, now_ms()))], "door-x")
        wait_for(lambda: seen.history("MARK2").inside, what="door-a applied the forged annulment")
        h = seen.history("T1")
        assert h.inside and (h.first_gate, h.first_ts) == ("door-a", real_ts)
        # T1 is shown again as a new presentation: once the door has seen empty frames for longer than
        # its debounce (0.2 s at 30 fps is 6 frames)
        shown = s.processed
        wait_for(lambda: s.processed >= shown + 12, what="the first presentation over")
        go.set()
        th.join(20)
        assert [v.reason for v, _ in verdicts] == ["ok", "already_used"]
        assert "door-a" in verdicts[1][0].detail
    finally:
        go.set()
        s.stop.set()
        th.join(10)


def test_word_a_remote_gate_adds_to_the_record_never_erases_it(tmp_path):
    store = TicketStore(tmp_path / "s.db")
    store.record("T1", "admitted", 10_000, "door-a")
    # door-x saw door-a's admission on the bus and annuls "its" admission at the same time: nothing happens.
    store.record_remote([("T1", "annulled", 10_000, "door-x"), ("T1", "admitted", 5_000, "door-x"),
                         ("T1", "annulled", 5_000, "door-x")], 1000)
    h = store.history("T1")
    assert h.inside and (h.first_gate, h.first_ts) == ("door-a", 10_000) and h.entries == (10_000,)
    # Its own admission stands beside door-a's (a real earlier use elsewhere is still the first use) ...
    store.record_remote([("T2", "admitted", 20_000, "door-a"), ("T2", "admitted", 15_000, "door-x")], 1000)
    assert store.history("T2").first_gate == "door-x"
    # ... and its annulment takes back only its own.
    store.record_remote([("T2", "annulled", 15_000, "door-x")], 1000)
    h = store.history("T2")
    assert h.inside and (h.first_gate, h.first_ts) == ("door-a", 20_000)
    # An exit at the exit gate after an entry at door-a: outside; an older exit arriving late changes nothing.
    store.record("T3", "admitted", 30_000, "door-a")
    store.record_remote([("T3", "exited", 40_000, "exit-1")], 1000)
    assert not store.history("T3").inside
    store.record("T4", "admitted", 30_000, "door-a")
    store.record_remote([("T4", "exited", 20_000, "exit-1")], 1000)
    assert store.history("T4").inside


def test_word_an_unsynced_remote_admission_is_placed_at_its_arrival(tmp_path):
    store = TicketStore(tmp_path / "s.db")
    remote = RemoteScans(store)
    before = now_ms()
    remote.offer(RemoteScan(forged("T1", 1, 1, clock="unsynced")))
    remote.apply()
    h = store.history("T1")
    assert h.first_gate == "door-x" and h.first_ts >= before   # never 1970
    remote.offer(RemoteScan(forged("T1", 2, 1, "annulled", clock="unsynced")))   # matched by the time it sent
    remote.apply()
    assert store.history("T1").first_ts is None


# -- what a lane can pass ------------------------------------------------------------------------

def test_word_lane_meter_judges_on_the_claims_own_times():
    t = [0.0]
    m = lane.LaneMeter(clock=lambda: t[0])
    now = now_ms()
    burst = [m.judge("x", "admitted", now, True, now) for _ in range(1000)]
    assert burst.count("") == lane.ENTRY_BURST and set(burst) == {"", "lane"}
    # An hour of claims stamped one every 1.2 s (a drained outbox) passes whole, at another gate too.
    drain = [m.judge("y", "admitted", now - 3_600_000 + int(i * 1200), True, now) for i in range(3000)]
    assert drain.count("") == 3000
    assert m.judge("y", "admitted", now + lane.FUTURE_MS + 60_000, True, now) == "future"
    # Exits have their own, wider bucket; rejections and annulments are never judged.
    assert m.judge("x", "exited", now, True, now) == "" and m.judge("x", "annulled", now, True, now) == ""
    # One odd unsynchronised clock (a forged year) does not wedge the gate's bucket for good.
    z = [m.judge("z", "admitted", 5_000_000 + i * 2000, False, now) for i in range(10)]
    assert m.judge("z", "admitted", 2 ** 52, False, now) == ""
    t[0] += lane.RELEAP_S
    back = [m.judge("z", "admitted", 5_100_000 + i * 1000, False, now) for i in range(300)]
    assert z.count("") == 10 and back.count("") == 300
    assert m.flagged == {"x": 1000 - lane.ENTRY_BURST, "y": 1}
    # pretix's own check-ins, which the house relays under the pseudo-gate `pretix`, come from many devices
    assert all(m.judge("pretix", "admitted", now, True, now) == "" for _ in range(1000))


@pytest.mark.slow   # about 10 s: make test-slow runs it
def test_word_a_20000_admission_burst_blocks_no_other_door(tmp_path, broker, house, mock_factory, tickets_csv):
    """door-x's credential claims 20,000 admissions stamped now, among them tickets never used. Another
    door still admits a never-used ticket; the door's health, the house's /api/house and its alarms flag
    door-x; the house counts no more than a lane can pass."""
    go = threading.Event()

    def frames():
        while not go.is_set():
            yield EMPTY
        code = compose("CODE-0002", "clean", rng=RNG)
        for _ in range(300):   # held up until the door answers (a loaded machine drops frames), at most 10 s
            if verdicts:
                break
            yield code
        yield from [EMPTY] * 10
    verdicts: list = []
    cfg = gate_config(tmp_path, gate="door-q", port=broker.port, mqtt_on=True)
    s, th = run_scanner(cfg, frames(), mock_factory, tickets_csv)
    s.on_verdict = lambda v, w, e: verdicts.append(v)
    try:
        wait_for(s.link.connected.is_set, what="door-q connected")
        c = _publisher(broker.port, "door-x")
        now = now_ms()
        infos = []
        for i in range(20_000):
            ticket = "T2" if i == 500 else f"X{i}"   # T2 is a real ticket nobody has used
            infos.append(c.publish("gate/hall/door-x/scan", pack_scan(forged(ticket, i + 1, now)), qos=1))
        for info in infos:
            info.wait_for_publish(30)
        c.disconnect()
        c.loop_stop()
        # the link lets 10,000 of one gate's burst by; each reaches the loop's backlog through the control queue
        wait_for(lambda: s.parts.remote.implausible.get("door-x", 0) >= 10_000 - lane.ENTRY_BURST - 10, 60,
                 what=lambda: f"door-q judged the burst (so far {s.parts.remote.implausible.get('door-x', 0)})")
        wait_for(lambda: not s.parts.remote.backlog, 30, what="door-q applied what it believed")
        seen = TicketStore(cfg.storage.dir + "/tickets.db")   # door-q's files, read on a connection of our own
        assert seen.history("X0").inside                     # the first claims are what a lane could pass
        assert not seen.history("T2").inside                 # claim 501: beyond the lane, not believed
        health = s.health()   # what door-q tells the house about door-x (the link itself lets 10,000 by)
        assert health["implausible"]["door-x"] >= 10_000 - lane.ENTRY_BURST - 10
        go.set()
        th.join(30)
        assert [v.reason for v in verdicts] == ["ok"]       # a never-used ticket is admitted at door-q
        h = wait_for(lambda: (lambda h: h if eve(h).get("implausible", 0) + eve(h)["admitted"] >= 20_000 else None)(
            api(house.cfg)), 60, what="the house judged all 20,000")
        assert eve(h)["admitted"] <= lane.ENTRY_BURST + 5 and eve(h)["inside"] <= lane.ENTRY_BURST + 5
        x = next(g for g in h["gates"] if g["gate"] == "door-x")
        assert x["implausible"] >= 20_000 - lane.ENTRY_BURST - 5
        assert any(a["kind"] == "security" and a["gate"] == "door-x" for a in h["alarms"])
        assert house.log.db.execute("SELECT count(*) FROM scans WHERE gate='door-x'").fetchone()[0] == 20_000  # kept
        assert house.log.db.execute("SELECT count(*) FROM scans WHERE flag='implausible'").fetchone()[0] == \
            x["implausible"]
    finally:
        go.set()
        s.stop.set()
        th.join(10)


def test_word_a_genuine_drain_after_an_hour_offline_counts_whole(tmp_path, broker, house):
    """door-a was offline for an hour and scanned 3,000 tickets (its outbox numbers them 1..3000, stamped
    over that hour). Back online it drains them in seconds: the house counts all of them and another
    door records all of them, none judged implausible."""
    got = []
    q = GateLink(gate_config(tmp_path, gate="door-q", port=broker.port, mqtt_on=True), tmp_path / "q.db",
                 profile="turnstile", on_remote_scan=got.append)
    q.start()
    store = TicketStore(tmp_path / "q-tickets.db")
    remote = RemoteScans(store)
    path = tmp_path / "door-a-outbox.db"
    outbox = Outbox(path)
    start = now_ms() - 3_600_000
    for i in range(3000):
        outbox.append("door-a", start + i * 1200, "eve", f"D{i}", "in", "admitted", "ok")
    link = GateLink(gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True), path,
                    profile="turnstile")
    try:
        wait_for(q.connected.is_set)
        link.start()
        wait_for(lambda: len(got) == 3000, 30, what="door-q hears all 3,000")
        for e in got:
            remote.offer(RemoteScan(e))
        while remote.backlog:
            remote.apply()
        assert remote.implausible == {} and store.history("D2999").inside and store.history("D0").inside
        h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 3000 else None)(api(house.cfg)), 30,
                     what="the house counts all 3,000")
        assert eve(h)["implausible"] == 0 and not [a for a in h["alarms"] if a["kind"] == "security"]
    finally:
        link.close()
        q.close()


# -- the house ------------------------------------------------------------------------------------

def test_word_the_house_alarms_past_capacity(broker, house):
    now = now_ms()   # eve's capacity is 100 (tests/test_mqtt.py house_config); a lane's pace from two doors
    publish_raw(broker.port, "gate/hall/door-a/scan",
                 [pack_scan(forged(f"C{i}", i + 1, now - (60 - i) * 1000, gate="door-a")) for i in range(60)])
    h = wait_for(lambda: (lambda h: h if eve(h)["inside"] == 60 else None)(api(house.cfg)), what="60 inside")
    assert not eve(h)["over_capacity"] and not h["alarms"]
    publish_raw(broker.port, "gate/hall/door-b/scan",
                 [pack_scan(forged(f"D{i}", i + 1, now - (41 - i) * 1000, gate="door-b")) for i in range(41)])
    h = wait_for(lambda: (lambda h: h if eve(h)["inside"] == 101 else None)(api(house.cfg)), what="101 inside")
    h = wait_for(lambda: (lambda h: h if h["alarms"] else None)(api(house.cfg)), what="the capacity alarm")
    assert eve(h)["over_capacity"]
    [a] = h["alarms"]
    assert (a["kind"], a["level"], a["event"]) == ("capacity", "critical", "eve") and "101 inside" in a["text"]
    publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(forged("D0", 50, now, "exited", gate="door-b"))])
    wait_for(lambda: not api(house.cfg)["alarms"], what="the alarm clears back within capacity")


def test_word_one_odd_clock_does_not_move_a_gates_times(broker, house):
    """door-z's clock is unsynchronised. One event stamped `ts = 1` arrives first; the genuine ones after it
    (stamped three years back) must still land at the house's time, and the odd one must not claim 1970."""
    years_ago = now_ms() - 3 * YEAR_MS
    publish_raw(broker.port, "gate/hall/door-z/scan",
                 [pack_scan(forged("ODD", 1, 1, gate="door-z", clock="unsynced"))] +
                 [pack_scan(forged(f"Z{i}", i + 2, years_ago + i * 1000, gate="door-z", clock="unsynced"))
                  for i in range(5)] +
                 [pack_scan(forged("Z0", 7, years_ago, "annulled", gate="door-z", clock="unsynced"))])
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 5 and eve(h)["annulled"] == 1 else None)(
        api(house.cfg)), what="door-z's events counted (Z0 annulled)")
    now_min = int(time.time() // 60) * 60000
    recent = sum(n for m, n in eve(h)["per_minute"] if m >= now_min - 60000)
    assert recent == 5   # all at the house's time: ODD and Z1..Z4; Z0's admission taken back
    ts = [t for (t,) in house.log.db.execute("SELECT ts FROM scans WHERE gate='door-z'")]
    assert min(ts) >= now_ms() - 120_000
    assert house.log.db.execute("SELECT count(*) FROM scans WHERE sent_ts IS NOT NULL").fetchone()[0] == 7


# -- gap recovery -------------------------------------------------------------------------------------

def test_word_gap_tracker_keeps_the_real_run_after_a_forged_huge_seq():
    t = [0.0]
    g = GapTracker(clock=lambda: t[0])
    for s in (1, 2, 3):
        g.track("door-a", s)
    g.track("door-a", 2 ** 53 - 1)            # forged
    g.track("door-a", 9)                      # real: 4..8 were lost
    assert g.missing("door-a") == 5
    t[0] += gaps.GRACE_S + 0.1
    assert g.due() == {"door-a": [4, 5, 6, 7, 8]}
    for s in range(10, 10 + 3 * gaps.RUNS):   # more forged runs cannot push the real one out
        g.track("door-a", 2 ** 40 + s * 100_000)
        g.track("door-a", s)
    assert g.missing("door-a") == 5 and g.runs_started >= 3 * gaps.RUNS


def test_word_forged_huge_seq_then_real_lost_events_are_still_recovered(tmp_path, broker, house):
    """door-a's events 4..8 were acknowledged by the broker but never reached the house. Before the house
    hears event 9, door-x's credential (here: anyone on the test broker) publishes a scan under door-a's name
    with seq 2^53 - 1. The house must still ask door-a for 4..8 and count them."""
    path = tmp_path / "door-a-outbox.db"
    outbox = Outbox(path)
    cfg = gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True)
    t0 = now_ms() - 60_000
    link = GateLink(cfg, path, profile="turnstile")
    link.start()
    try:
        for i in range(3):
            outbox.append("door-a", t0 + i * 1000, "eve", f"A{i + 1}", "in", "admitted", "ok")
        wait_for(lambda: eve(api(house.cfg))["admitted"] == 3, what="door-a's first three counted")
    finally:
        link.close()
    bad = forged("FORGED", 2 ** 53 - 1, now_ms(), gate="door-a")
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(bad)], "door-x")
    wait_for(lambda: eve(api(house.cfg))["admitted"] == 4, what="the forged one stored")
    for i in range(3, 8):   # lost between the broker and the house: acknowledged, never delivered
        outbox.append("door-a", t0 + i * 1000, "eve", f"A{i + 1}", "in", "admitted", "ok")
    outbox.ack([4, 5, 6, 7, 8])
    outbox.append("door-a", t0 + 9000, "eve", "A9", "in", "admitted", "ok")
    link = GateLink(cfg, path, profile="turnstile")
    link.start()
    try:
        h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 10 else None)(api(house.cfg)), 20,
                     what="4..8 asked for again and counted")
        a = next(g for g in h["gates"] if g["gate"] == "door-a")
        assert a["missing"] == 0 and a["unrecovered"] == 0
    finally:
        link.close()


@pytest.mark.parametrize("mode", ["live", "test"])
def test_word_rehearsal_claims_are_judged_by_the_same_lane(tmp_path, mode):
    store = TicketStore(tmp_path / "s.db")
    remote = RemoteScans(store)
    now = now_ms()
    for i in range(lane.ENTRY_BURST + 50):
        remote.offer(RemoteScan(forged(f"R{i}", i + 1, now, mode=mode)))
    while remote.backlog:
        remote.apply()
    assert remote.implausible == {"door-x": 50} and remote.drops["implausible"] == 50
    assert store.history(f"R{lane.ENTRY_BURST - 1}", mode).inside
    assert not store.history(f"R{lane.ENTRY_BURST}", mode).inside
