"""The house count as a pure model: order-independent and exact."""

import itertools
import random
import time

from gate.core.events import ScanEvent
from gate.house.counts import HouseCounts

_n = itertools.count()


def ev(ticket, result="admitted", gate="a", ts=None, reason=None, event="eve"):
    i = next(_n)
    reason = reason or {"admitted": "ok", "exited": "exit", "rejected": "already_used", "annulled": "not_passed"}[result]
    return ScanEvent(id=f"e{i}", gate=gate, seq=i, ts=ts if ts is not None else 1000 * i, event=event,
                     ticket=ticket, dir="out" if result == "exited" else "in", result=result, reason=reason)


def counts(events):
    h = HouseCounts()
    for e in events:
        h.add(e)
    s = h.snapshot("eve")
    return s["inside"], s["admitted"], s["exited"], s["rejected"], len(h.events["eve"].conflicts)


def test_house_counts_basic():
    es = [ev("T1"), ev("T2"), ev("T1", "rejected"), ev("T2", "exited"), ev("", "exited")]
    assert counts(es) == (0, 2, 2, 1, 0)


def test_house_counts_annulled_admission_does_not_count():
    a = ev("T1", ts=5000)
    es = [a, ev("T1", "annulled", ts=5000), ev("T2")]
    assert counts(es) == (1, 1, 0, 0, 0)


def test_house_counts_conflict_flags_the_later_admission():
    first, later = ev("T1", gate="a", ts=1000), ev("T1", gate="b", ts=2000)
    h = HouseCounts()
    h.add(later)
    h.add(first)  # the earlier one arrives last (its gate was offline)
    [c] = h.events["eve"].conflicts.values()
    assert (c["gate"], c["first_gate"]) == ("b", "a")
    assert h.snapshot("eve")["admitted"] == 1 and h.snapshot("eve")["inside"] == 1


def test_house_counts_same_whatever_the_arrival_order():
    rng = random.Random(4)
    es = []
    for i in range(40):
        t = f"T{i}"
        es.append(ev(t, gate=rng.choice("ab")))
        if i % 3 == 0:
            es.append(ev(t, "exited", gate="x"))
        if i % 5 == 0:
            es.append(ev(t, gate="b", reason="reentry"))
        if i % 7 == 0:
            es.append(ev(t, "rejected"))
    expected = counts(es)
    for _ in range(20):
        shuffled = es[:]
        rng.shuffle(shuffled)
        assert counts(shuffled) == expected


def test_house_one_ticket_flooded_costs_bounded_work():
    """A gate (or a stolen gate credential) sending thousands of admissions for one ticket must not
    stall counting: the work per event is bounded and the excess is counted, not applied."""
    import time as _time

    from gate.core.events import ScanEvent
    from gate.house.counts import MAX_EVENTS_PER_TICKET_GATE
    c = HouseCounts()
    t0 = _time.monotonic()
    for i in range(5000):
        c.add(ScanEvent(f"f{i}", "door-x", i + 1, 1_700_000_000_000 + i, "eve", "T-evil", "in", "admitted", "ok"))
    assert _time.monotonic() - t0 < 3.0                 # was cubic: 1,000 such events took over a minute
    c.add(ScanEvent("ok1", "door-b", 1, 1_700_000_100_000, "eve", "T2", "in", "admitted", "ok"))
    d = c.detail("eve")
    assert d["admitted"] == 2 and d["inside"] == 2
    assert d["flooded"] == 5000 - MAX_EVENTS_PER_TICKET_GATE
    assert len(d["conflicts"]) == MAX_EVENTS_PER_TICKET_GATE - 1
    # The flooding gate cannot crowd out the ticket's real story at another door.
    c.add(ScanEvent("x1", "door-x", 9000, 1_700_000_000_000 + 9000, "eve", "T-evil", "out", "exited", "exit"))
    c.add(ScanEvent("r1", "door-a", 1, 1_700_000_000_000 + 9001, "eve", "T-evil", "in", "admitted", "ok"))
    assert c.detail("eve")["flooded"] == 5001 - MAX_EVENTS_PER_TICKET_GATE
    assert c.detail("eve")["inside"] == 2


def test_house_log_keys_events_by_gate_and_id(tmp_path):
    """door-b reusing door-a's event id (gates see each other's scans) must not make door-a's real
    admission a 'duplicate'; an attendance log from before is re-keyed with every row kept."""
    import sqlite3

    from gate.house.log import AttendanceLog
    old = sqlite3.connect(tmp_path / "house.db")
    old.execute("CREATE TABLE scans (id TEXT PRIMARY KEY, gate TEXT, seq INTEGER, ts INTEGER, event TEXT, "
                "ticket TEXT, dir TEXT, result TEXT, reason TEXT, attention TEXT, received INTEGER)")
    old.execute("INSERT INTO scans VALUES ('E0','door-a',1,1000,'eve','T0','in','admitted','ok','[]',1)")
    old.commit()
    old.close()
    lg = AttendanceLog(tmp_path / "house.db")
    lg.add([ScanEvent("E1", "door-b", 1, 2000, "", "h:x", "in", "rejected", "unknown")])
    lg.add([ScanEvent("E1", "door-a", 2, 2001, "eve", "T1", "in", "admitted", "ok")])
    got = sorted((e.gate, e.id, e.ticket) for e in lg.events())
    assert got == [("door-a", "E0", "T0"), ("door-a", "E1", "T1"), ("door-b", "E1", "h:x")]
    lg.close()



def _yield_between_opcodes(frame, event, arg):
    """A trace function that hands the GIL over before every bytecode of the thread it traces:
    under the GIL a thread is switched only at a few points, so a race that a free-threaded
    interpreter (or a longer mark) would show stays hidden; this opens every gap."""
    frame.f_trace_opcodes = True
    if event == "opcode":
        time.sleep(0)
    return _yield_between_opcodes


def test_house_no_change_mark_is_lost_while_the_publisher_swaps_the_dirty_set():
    """The pretix link (and paho's thread, and the intake) mark performances changed while the
    publisher takes the marks and publishes them: every mark must reach a publish. The link used
    to add to the dirty set without the lock the publisher held while swapping it, so a mark made
    between finding the set and adding to it landed in a set already published, and was lost."""
    import sys
    import threading

    from gate.house.publisher import Publisher
    from gate.house.state import HouseState

    state = HouseState({})
    published: set[str] = set()
    connected = threading.Event()
    connected.set()

    def publish(topic, payload, retain=False):   # what the broker would be handed
        if not topic.endswith("/inside"):
            published.add(topic.rsplit("/", 1)[1])
    publisher = Publisher("hall", state, publish, connected)
    writers, marks = 3, 200
    wanted = {f"w{w}-{k}" for w in range(writers) for k in range(marks)}

    def hammer(w):
        sys.settrace(_yield_between_opcodes)
        for k in range(marks):
            state.mark_dirty(f"w{w}-{k}")
    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    passes = 0
    while any(t.is_alive() for t in threads):
        publisher.publish_counts()
        passes += 1
    for t in threads:
        t.join()
    publisher.publish_counts()   # what was marked after the last pass
    assert passes > 1, "the publisher never ran while the marks were being made"
    assert sorted(wanted - published) == []
    assert not state.has_dirty()


def test_house_build_that_fails_part_way_closes_what_it_opened(tmp_path, venue_keys):
    """The pretix link is built after the attendance log, the state and the MQTT client: a token
    the link refuses (changed after the config check passed it) fails the build, which must close
    the log and leave no thread behind."""
    import os
    import threading

    import pytest

    from gate.config import parse
    from gate.core.errors import ConfigError
    from gate.house.build import build_house

    def open_logs():
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return [p for p in fds if "house.db" in p]
    (tmp_path / "pretix.token").write_text("token123\n")
    text = (venue_keys.signing_toml(publisher=True)
            + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:1"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
              f'[storage]\ndir = "{tmp_path}/house"\n[pretix]\nurl = "http://127.0.0.1:1"\norganizer = "org"\n'
              f'event = "gala"\ncheckin_list = 1\ntoken_file = "{tmp_path}/pretix.token"\n')
    cfg = parse(text, str(tmp_path / "house.toml"))
    (tmp_path / "pretix.token").write_text("two words\n")   # since the check: whitespace inside, no token
    threads = set(threading.enumerate())
    with pytest.raises(ConfigError, match="pretix.token_file"):
        build_house(cfg)
    assert (tmp_path / "house" / "house.db").exists()   # the log was opened before the link failed
    assert open_logs() == []
    assert set(threading.enumerate()) <= threads


def test_the_intake_settles_the_heap_every_few_thousand_events_when_asked(tmp_path):
    """In `gate house` (HouseParts.start(settle_heap=True)) the intake moves what it counted out of the
    cyclic collector's way every SETTLE_EVERY events; a house built in a test process never does."""
    from gate.bus.codec import pack_scan
    from gate.house.build import build_house
    from gate.house.intake import SETTLE_EVERY
    from tests.conftest import house_config
    house = build_house(house_config(tmp_path, 1))
    try:
        now = int(time.time() * 1000)

        def batch(start, n):
            return [(f"gate/hall/door-{g}/scan", pack_scan(ScanEvent(
                f"door-{g}-{i}", f"door-{g}", i + 1, now - (10_000 - i) * 1000, "eve", f"T{g}-{i}", "in",
                "admitted", "ok")), 0, 0) for i in range(start, start + n) for g in range(2)]
        assert house.intake.settle is None
        house.intake._handle_batch(batch(0, SETTLE_EVERY))   # nothing asked: nothing settled
        settled = []
        house.intake.settle = lambda: settled.append(house.state.counts.seen)
        for k in range(5):
            house.intake._handle_batch(batch(SETTLE_EVERY + k * 1000, 1000))
        assert house.state.counts.seen == 2 * SETTLE_EVERY + 10_000
        assert settled == [2 * SETTLE_EVERY + 6000]   # 10,000 counted since it was asked: once at 6,000 over 5,000
    finally:
        house.close()
