"""The house's alerts (gate/house/alerts.py, watch.py, alertrules.py, dooralerts.py): each kind raised
from scan events and gate statuses at known times on an injected clock, with a sentence a person can
act on; rate-bound per level and de-duplicated."""

from __future__ import annotations

import time

import pytest

from gate.house.alerts import BUDGET, Alerts
from tests.flowkit import MINUTE, T0, Clock, House


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_alerts_arrivals_greet_assist_first_visit_with_door_name_and_seat():
    h = House()
    h.roster({"M1": ("eve", "B12"), "W1": ("eve", "A3"), "F1": ("eve", "C4"), "P1": ("eve", "")}, {"eve": 4})
    h.state.set_holders({"M1": ("Ada Lovelace", "p-ada", "member"), "W1": ("Grace Hopper", "p-grace", ""),
                         "F1": ("Alan Turing", "p-alan", ""), "P1": ("", "", "")})
    h.scan("M1", "door-a", attention=["member", "birthday"])
    h.scan("W1", "door-b", attention=["wheelchair"])
    h.scan("F1", "door-a", attention=["first_visit"])
    h.scan("P1", "door-a")                                   # nothing to tell
    h.watch.step()
    got = {a["gate"] + ":" + a["tags"][0]: a for a in h.alerts_of("arrival")}
    assert got["door-a:member"]["text"] == "Greet Ada Lovelace (member, birthday) at door-a, seat B12."
    assert got["door-a:member"]["level"] == "info" and got["door-a:member"]["event"] == "eve"
    assert got["door-b:wheelchair"]["text"] == "Assist Grace Hopper (wheelchair) at door-b, seat A3."
    assert got["door-b:wheelchair"]["level"] == "warn"
    assert got["door-a:first_visit"]["text"] == "First visit: welcome Alan Turing at door-a, seat C4."
    assert len(got) == 3
    for a in h.alerts_of():   # the contract's payload
        assert set(a) == {"kind", "level", "event", "gate", "text", "tags", "ts"} and a["ts"] == T0


def test_alerts_arrival_told_once_a_night_and_never_for_history():
    h = House()
    h.state.set_holders({"M1": ("Ada Lovelace", "", "")})
    h.scan("M1", attention=["member"])
    h.watch.step()
    h.clock.t += 60_000
    h.scan("M1", attention=["member"], result="exited", reason="exit")
    h.scan("M1", attention=["member"])   # back in after the interval: greeted already
    h.watch.step()
    assert len(h.alerts_of("arrival")) == 1
    h.scan("OLD", ts=h.clock.t - 3600_000, attention=["member"])   # a gate's outbox drained an hour late
    h.flow.quiet = True
    h.scan("RESTORED", attention=["member"])                       # the log read at start
    h.flow.quiet = False
    h.watch.step()
    assert len(h.alerts_of("arrival")) == 1


def test_alerts_first_visit_from_the_log_once_it_holds_past_nights():
    h = House()
    holders = {f"P{i}": (f"Patron {i}", f"p{i}", "") for i in range(40)}
    holders.update({"N1": ("New Person", "p-new", ""), "R1": ("Regular", "p0", "")})
    h.state.set_holders(holders)
    for i in range(40):   # last week's night: patrons p0..p39
        h.scan(f"P{i}", event="last-week", ts=T0 - 7 * 86_400_000 + i * 1000)
    h.scan("N1")
    h.scan("R1")          # p0 again: a returning patron
    h.watch.step()
    texts = [a["text"] for a in h.alerts_of("arrival")]
    assert texts == ["First visit: welcome New Person at door-a."]


def test_alerts_rate_bound_per_level_and_one_summary_of_what_was_held_back():
    clock = Clock()
    sent = []
    a = Alerts("hall", lambda t, p, r: sent.append((t, p, r)), clock=clock)
    per_min, burst = BUDGET["info"]
    for i in range(50):
        a.notify("arrival", "info", f"Greet patron {i} at door-a.", key=f"arrival:eve:T{i}")
    assert len(sent) == burst and all(r is False for _, _, r in sent)
    # A flood of greetings never takes the room a critical alert needs.
    assert a.raise_("security:forged:door-a", "security", "critical", "door-a refused 12 forged codes")
    assert len(sent) == burst + 1
    assert a.report()["held_back"] == {"arrival": 50 - burst}
    assert len(a.report()["recent"]) == 51   # the dashboard lists every one
    a.tick()                                 # says at once how many were held back ...
    assert '"held_back"' in sent[-1][1] and f"{50 - burst} more arrival alerts held back" in sent[-1][1]
    n = len(sent)
    a.notify("arrival", "info", "Greet one more.", key="arrival:eve:X")
    a.tick()
    assert len(sent) == n                    # ... then at most once a minute; the budget is still spent
    clock.t += 60_000                        # a minute later the budget has room again
    a.tick()
    assert "1 more arrival alert held back" in sent[-1][1]
    a.notify("arrival", "info", "Greet a later patron.", key="arrival:eve:Y")
    assert "Greet a later patron." in sent[-1][1]
    assert per_min >= burst


def test_alerts_condition_deduplicated_and_cleared_once():
    clock = Clock()
    sent = []
    a = Alerts("hall", lambda t, p, r: sent.append(p), clock=clock)
    for _ in range(5):
        a.raise_("sync:error", "sync", "warn", "pretix sync failing: timed out")
    assert len(sent) == 1 and a.problem()
    assert a.raise_("sync:error", "sync", "critical", "pretix sync failing: timed out")   # the level changed
    assert len(sent) == 2 and a.ranked()[0]["level"] == "critical"
    assert a.clear("sync:error", "pretix answers again") and not a.clear("sync:error")
    assert len(sent) == 3 and '"resolved"' in sent[-1] and not a.problem()
    a.notify("arrival", "info", "Greet Ada.", key="arrival:eve:M1")
    clock.t += 3600_000
    assert not a.notify("arrival", "info", "Greet Ada.", key="arrival:eve:M1")


def test_alerts_capacity_ninety_percent_then_full_then_back():
    h = House(capacity={"eve": 100})
    for i in range(89):
        h.scan(f"T{i}")
    h.watch.step()
    assert not h.alerts_of("capacity")
    h.scan("T89")
    h.clock.t += 1000
    h.watch.step()
    [near] = h.alerts_of("capacity")
    assert near["level"] == "warn" and near["text"].startswith("eve is 90 % full: 90 of 100 inside")
    for i in range(90, 100):
        h.scan(f"T{i}")
    h.clock.t += 1000
    h.watch.step()
    full = h.alerts_of("capacity")[-1]   # the 90 % one gives way to it without a "resolved" line
    assert full["level"] == "critical" and len(h.alerts_of("capacity")) == 2
    assert "eve is full: 100 inside, capacity 100. Hold the queue" in full["text"]
    h.scan("T100")                       # past capacity: the house's own alarm (gate/house/word.py) says so
    h.clock.t += 1000
    h.watch.step()
    assert [a["key"] for a in h.alerts.active()] == ["capacity:eve"]
    assert "101 inside, more than its capacity of 100" in h.alerts_of("capacity")[-1]["text"]
    h.scan("T100", result="exited", reason="exit")
    h.clock.t += 1000
    h.watch.step()                       # full again
    assert [a["key"] for a in h.alerts.active()] == ["capacity:full:eve"]
    assert h.active()["problem"] is True and h.active()["level"] == "critical"
    for i in range(12):   # people leave: below 90 % ...
        h.scan(f"T{i}", result="exited", reason="exit")
    h.clock.t += 1000
    h.watch.step()
    # ... 88 inside: not full, but not below 85 % either, so the 90 % alert stands again
    assert [a["key"] for a in h.alerts.active()] == ["capacity:near:eve"]


def test_alerts_curtain_at_risk_with_the_rate_forecast():
    h = House(curtain={"eve": "2026-11-23T17:45"})
    h.roster({f"T{i}": ("eve", "") for i in range(600)}, {"eve": 600})
    h.clock.t = T0 + 20 * MINUTE   # 25 minutes before the curtain: 10 a minute for the last 5 minutes
    for i in range(50):
        h.scan(f"T{i}", "door-a" if i % 2 else "door-b", ts=T0 + 15 * MINUTE + i * 6000)
    h.watch.step()
    [a] = h.alerts_of("flow")
    # 550 to come at 10 a minute: 550 - 25 x 10 = 300 still outside at 17:45; all in by 18:15
    assert a["level"] == "warn" and a["event"] == "eve"
    assert a["text"] == ("Curtain at risk for eve: about 300 patrons will still be outside at 17:45 (10 a minute at "
                         "2 doors; all in by about 18:15, rate forecast). Hold the curtain, or open another door.")
    h.clock.t += 1000
    h.watch.step()
    assert len(h.alerts_of("flow")) == 1   # the same figures: nothing new to say
    h.clock.t = T0 + 37 * MINUTE           # eight minutes to go and nobody came for a while: critical now
    h.watch.step()
    last = h.alerts_of("flow")[-1]
    assert last["level"] == "critical"
    assert last["text"] == ("Curtain at risk for eve: about 550 patrons will still be outside at 17:45 (nobody came "
                            "in for the last 5 minutes, rate forecast). Hold the curtain, or open another door.")


def test_alerts_queue_at_one_door_while_another_is_idle():
    h = House()
    for g in ("door-a", "door-b", "door-c"):
        h.status(g)
    h.status("door-c", mode="exit")   # an exit door is no place to send patrons
    for s in range(0, 300, 3):        # door-a: a patron every 3 s for five minutes
        h.scan(f"A{s}", "door-a", ts=T0 + s * 1000)
    for s in range(0, 300, 60):       # door-b: one a minute
        h.scan(f"B{s}", "door-b", ts=T0 + s * 1000)
        h.scan(f"C{s}", "door-c", ts=T0 + s * 1000 + 5)
    h.clock.t = T0 + 5 * MINUTE
    h.watch.step()
    [a] = h.alerts_of("flow")
    assert a["gate"] == "door-a" and a["level"] == "warn"
    assert a["text"] == ("door-a has a queue (busy 100 % of the last 5 minutes, 20 a minute) while door-b is nearly "
                         "idle: send patrons to door-b.")


def test_alerts_doors_offline_latched_rehearsing_and_two_devices():
    h = House()
    h.status("door-a")
    h.status("door-b")
    h.status("door-c")
    h.status("door-a", state="offline", ts=False)   # its last will: no goodbye
    h.status("door-b", state="offline", ts=True)    # switched off by a person: no alert
    h.status("door-c", out_of_order="relay stuck closed")
    h.status("door-d", mode="test")                 # rehearsing while the venue is live
    h.scan("R1", "door-e", mode="test")             # rehearsal scans while live
    for _ in range(2):                              # door-f's status flips four times in a minute
        h.status("door-f", state="online")
        h.clock.t += 10_000
        h.status("door-f", state="offline", ts=False)
        h.clock.t += 10_000
    h.status("door-f", state="online")
    h.watch.step()
    by_key = {a["key"]: a for a in h.alerts.active()}
    assert by_key["door:offline:door-a"]["level"] == "warn"
    assert "door-a went offline at 17:00 without saying goodbye" in by_key["door:offline:door-a"]["text"]
    assert "door:offline:door-b" not in by_key
    assert by_key["door:latched:door-c"]["level"] == "critical"
    assert "door-c is out of order (relay stuck closed) and admits nobody" in by_key["door:latched:door-c"]["text"]
    assert {"door:rehearsal:door-d", "door:rehearsal:door-e"} <= set(by_key)
    assert "in rehearsal while the venue is live" in by_key["door:rehearsal:door-e"]["text"]
    assert by_key["door:duplicate:door-f"]["level"] == "critical"
    assert "two devices may share its identity" in by_key["door:duplicate:door-f"]["text"]
    assert h.active()["level"] == "critical" and h.active()["count"] == len(by_key)
    assert [a["level"] for a in h.active()["alerts"]][:2] == ["critical", "critical"]   # ranked by level
    # door-a comes back: its alert is cleared with one line saying so.
    h.status("door-a")
    h.clock.t += 1000
    h.watch.step()
    assert not h.alerts.is_active("door:offline:door-a")
    assert any(a["kind"] == "door" and "resolved" in a["tags"] and a["gate"] == "door-a" for a in h.alerts_of())


def test_alerts_security_forged_burst_and_impossible_claims():
    h = House()
    for i in range(9):
        h.scan(f"F{i}", "door-a", result="rejected", reason="forged", event="")
    h.watch.step()
    assert not h.alerts_of("security")
    for i in range(5):
        h.scan(f"G{i}", "door-a", result="rejected", reason="forged", event="")
    h.clock.t += 1000
    h.watch.step()
    [a] = h.alerts_of("security")
    assert a["level"] == "critical" and a["text"].startswith("door-a refused 14 forged codes in the last minute")
    for i in range(130):   # 130 admissions in one minute from one door
        h.scan(f"X{i}", "door-x", ts=T0 + 2 * MINUTE + i * 100)
    h.clock.t += 1000
    h.watch.step()
    claim = [x for x in h.alerts_of("security") if x["gate"] == "door-x" and "no lane" in x["text"]]
    assert claim and "130 admissions in one minute" in claim[0]["text"] and "gate broker revoke door-x" in claim[0]["text"]
    h.clock.t += 2 * MINUTE   # a minute without forgeries: the burst alert is over
    h.watch.step()
    assert not h.alerts.is_active("security:forged:door-a")


def test_alerts_watch_settles_the_heap_only_when_the_process_is_the_house():
    import gc
    h = House()
    frozen = gc.get_freeze_count()
    h.watch.step()                        # the tests build many houses: nothing frozen for them
    assert gc.get_freeze_count() == frozen
    h.watch.settle = True                 # as `gate house` starts it (HouseParts.start(settle_heap=True))
    h.clock.t += 60_000                   # then once a minute
    try:
        h.watch.step()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
