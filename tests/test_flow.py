"""Door flow (gate/house/flow.py, forecast.py): the house driven with scan events at known rates
and times on an injected clock; the figures it reports are checked against arithmetic done by hand."""

from __future__ import annotations

import time

import pytest

from gate.house import forecast
from gate.house.curtain import Curtains, on_day
from tests.flowkit import MINUTE, T0, House

CURTAIN = "2026-11-23T17:45"   # local time; T0 is 17:00 in the zone the tests are given (UTC below)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Local time is UTC here, so 17:45 is T0 + 45 min whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_flow_rates_busy_shares_and_still_expected_from_known_arrivals():
    h = House(capacity={"eve": 500}, curtain={"eve": CURTAIN})
    h.roster({f"T{i}": ("eve", f"A{i}") for i in range(400)}, {"eve": 400})
    # Ten minutes: door-a takes one patron every 4 s (a queue), door-b one every 20 s (nobody waiting).
    n = 0
    for s in range(0, 600, 4):
        h.clock.t = T0 + s * 1000
        h.scan(f"T{n}", "door-a")
        n += 1
        if s % 20 == 0:
            h.scan(f"T{n}", "door-b")
            n += 1
    h.clock.t = T0 + 10 * MINUTE
    f = h.flow_of()
    assert n == 150 + 30
    assert f["doors"]["door-a"] == {"rate": 15.0, "busy": 1.0, "admitted": 150, "peak": 15}
    # door-b: 3 scans a minute, each alone: 3 x 3 s of 60 s
    assert f["doors"]["door-b"] == {"rate": 3.0, "busy": 0.15, "admitted": 30, "peak": 3}
    assert f["rate"] == 18.0 and f["window_min"] == 5
    assert (f["sold"], f["in"], f["still_expected"]) == (400, 180, 220)
    # 220 still expected at 18 a minute: all in 12.2 min from now (17:22:13), before the 17:45 curtain
    assert f["method"] == "rate" and f["forecast"] == T0 + 10 * MINUTE + round(220 / 18 * MINUTE)
    assert f["curtain"] == T0 + 45 * MINUTE and f["curtain_from"] == "config"
    assert f["past_curtain"] is False and f["past_curtain_min"] == 0 and f["outside_at_curtain"] == 0
    # The retained house object carries the same figures (without the curves).
    [snap] = h.state.snapshots(["eve"])
    assert snap["flow"] == f and "curve" not in snap["flow"]


def test_flow_runs_past_the_curtain_and_says_by_how_much():
    h = House(curtain={"eve": CURTAIN})
    h.roster({f"T{i}": ("eve", "") for i in range(1000)}, {"eve": 1000})
    for i in range(100):   # 100 in over the first 10 minutes: 10 a minute
        h.clock.t = T0 + i * 6000
        h.scan(f"T{i}", "door-a" if i % 2 else "door-b")
    h.clock.t = T0 + 10 * MINUTE
    f = h.flow_of()
    # 900 to come at 10 a minute: 90 minutes from 17:10 is 18:40, 55 minutes past the curtain,
    # and 900 - 35 min x 10 = 550 still outside when it rises.
    assert (f["rate"], f["still_expected"]) == (10.0, 900)
    assert f["forecast"] == T0 + 100 * MINUTE
    assert f["past_curtain"] is True and f["past_curtain_min"] == 55.0 and f["outside_at_curtain"] == 550


def test_flow_window_starts_at_the_first_admission_when_the_doors_just_opened():
    h = House()
    for i in range(20):   # 20 patrons in the first 90 s
        h.clock.t = T0 + i * 4500
        h.scan(f"T{i}")
    h.clock.t = T0 + 90_000
    f = h.flow_of()
    assert f["rate"] == round(20 / 1.5, 1)   # not 20 over five minutes
    assert f["sold"] is None and f["still_expected"] is None and f["forecast"] is None   # no list: nobody known
    assert f["method"] is None and "no ticket list" in f["why"]


def test_flow_annulled_entries_and_tickets_not_on_the_list():
    h = House(curtain={"eve": CURTAIN})
    h.roster({"L1": ("eve", "B3"), "L2": ("eve", ""), "L3": ("eve", ""), "X1": ("other", "")}, {"eve": 3})
    a = h.scan("L1")
    h.scan("L2")
    h.scan("SIGNED-9")            # a signed ticket the list does not carry: counted, but never "expected"
    h.scan("X1")                  # another night's ticket admitted here: not one of tonight's expected
    assert (h.flow_of()["in"], h.flow_of()["still_expected"]) == (2, 1)
    h.clock.t += 5000
    h.scan("L1", ts=a.ts, result="annulled", reason="not_passed")   # nobody walked through
    f = h.flow_of()
    assert (f["in"], f["still_expected"]) == (1, 2)
    assert f["doors"]["door-a"]["admitted"] == 3
    # A new list with L3 moved to another night: who is in is counted against it once.
    h.roster({"L2": ("eve", ""), "L3": ("late", "")}, {"eve": 1, "late": 1})
    assert (h.flow_of()["in"], h.flow_of()["still_expected"]) == (1, 0)


def past_night(h, ev, day_offset, came, sold, curtain_ms):
    """`came` patrons arriving evenly over the hour before `curtain_ms`."""
    for i in range(came):
        h.clock.t = curtain_ms - 60 * MINUTE + (i * 60 * MINUTE) // came
        h.scan(f"{ev}-{i}", "door-a", event=ev)
    return sold


def test_flow_forecast_from_past_nights_arrival_profile_and_no_shows():
    tonight = T0 + 2 * 86_400_000
    curtain = tonight + 45 * MINUTE
    h = House(curtain={"eve": "2026-11-25T17:45", "mon": "2026-11-23T17:45", "tue": "2026-11-24T17:45"})
    past_night(h, "mon", 0, 60, 75, T0 + 45 * MINUTE)
    past_night(h, "tue", 1, 60, 75, T0 + 86_400_000 + 45 * MINUTE)
    tickets = {f"T{i}": ("eve", "") for i in range(200)}
    h.roster(tickets, {"eve": 200, "mon": 75, "tue": 75})
    # Tonight, half an hour before the curtain: 90 of 200 in (the past nights had 50 % in by then).
    for i in range(90):
        h.clock.t = curtain - 60 * MINUTE + i * 20_000
        h.scan(f"T{i}", "door-b")
    h.clock.t = curtain - 30 * MINUTE
    f = h.flow_of()
    assert f["method"] == "profile" and f["nights"] == 2 and f["no_show"] == 0.2   # 60 of 75 came
    # 200 sold, 20 % no-shows: 160 expected, 70 of them still to come, arriving as the past nights did:
    # evenly until the curtain, so all in (98 % of the rest) a little before it and nobody outside.
    assert f["expected"] == 160 and f["coming"] == 70 and f["still_expected"] == 110
    prof = forecast.profile({(T0 + 45 * MINUTE) // MINUTE - 60 + m: 1 for m in range(60)}, T0 + 45 * MINUTE)
    assert forecast.share_at(prof, -30) == pytest.approx(0.5)
    assert f["forecast"] == int(curtain + forecast.minute_reaching(prof, 0.5 + 0.98 * 0.5) * MINUTE)
    assert curtain - 2 * MINUTE < f["forecast"] < curtain
    assert f["past_curtain"] is False and f["outside_at_curtain"] == 0 and f["usual_late"] == 0


def test_flow_profile_method_needs_past_nights_else_the_rate_decides():
    h = House(curtain={"eve": CURTAIN})
    h.roster({f"T{i}": ("eve", "") for i in range(50)}, {"eve": 50})
    h.scan("T1")
    assert h.flow_of()["method"] == "rate" and h.flow_of()["nights"] == 0


def test_flow_curtain_time_of_day_falls_on_the_events_date_or_first_admission():
    c = Curtains({"2026-11-24-eve": "19:30", "gala": "20:00"})
    assert c.of("2026-11-24-eve", None, T0) == (on_day(19 * 60 + 30, T0 + 86_400_000), "config")
    assert c.of("gala", T0, T0 + 5 * 86_400_000) == (on_day(20 * 60, T0), "config")
    c.set_pretix({"autumn-gala": T0 + 3 * 3600_000})
    assert c.of("autumn-gala", None, T0) == (T0 + 3 * 3600_000, "pretix")
    assert c.of("unknown", None, T0) == (None, None)


def test_flow_detail_curve_per_door_and_forecast_line():
    h = House(curtain={"eve": CURTAIN})
    h.roster({f"T{i}": ("eve", "") for i in range(30)}, {"eve": 30})
    for i in range(10):
        h.clock.t = T0 + i * 30_000
        h.scan(f"T{i}", "door-a" if i < 6 else "door-b")
    h.clock.t = T0 + 5 * MINUTE
    d = h.flow.detail("eve")
    c = d["curve"]
    assert c["start"] == T0 and c["step"] == MINUTE and len(c["total"]) == 6
    assert c["total"] == [2, 4, 6, 8, 10, 10]
    assert c["doors"] == {"door-a": [2, 4, 6, 6, 6, 6], "door-b": [0, 0, 0, 2, 4, 4]}
    assert c["forecast"] == [[T0 + 5 * MINUTE, 10], [d["forecast"], 30]]


def test_flow_bounded_whatever_a_gate_claims():
    from gate.house.flow import MAX_LANES, MAX_MINUTES
    h = House()
    for i in range(MAX_MINUTES * 3):   # one admission in each of 18 hours of minutes
        h.scan(f"T{i}", ts=T0 + i * MINUTE)
    night = h.flow.nights["eve"]
    assert len(night.minutes) <= MAX_MINUTES + 60 and len(night.doors["door-a"].minutes) <= MAX_MINUTES + 60
    for g in range(MAX_LANES + 50):
        h.scan(f"G{g}", gate=f"g{g}", result="rejected", reason="forged", event="")
    assert len(h.flow.lanes) <= MAX_LANES and len(h.flow.forged) <= MAX_LANES


def test_flow_rebuilt_from_the_attendance_log_at_start(tmp_path):
    """A restart gives the same figures: the flow is counted again from the log, once, at start."""
    from gate.config import parse
    from gate.house.build import build_house
    from gate.house.log import AttendanceLog
    text = (f'[house]\nvenue = "hall"\ncurtain = {{ "eve" = "{CURTAIN}" }}\n'
            f'[storage]\ndir = "{tmp_path}/house"\n')
    cfg = parse(text, "house.toml")
    from gate.core.storage import HouseFiles
    log = AttendanceLog(HouseFiles.of(cfg.storage.dir).log)
    h = House()
    now = int(time.time() * 1000)
    events = [h.scan(f"T{i}", "door-a", ts=now - 240_000 + i * 8000) for i in range(30)]
    log.add(events)
    log.close()
    house = build_house(cfg, serve=False)
    try:
        at = now + 1000
        f = house.state.flow.summary("eve", now=at)
        assert f["doors"]["door-a"]["admitted"] == 30 and f["curtain_from"] == "config"
        assert f["doors"] == h.flow.summary("eve", now=at)["doors"]   # as counted live
        assert f["doors"]["door-a"]["busy"] > 0.75   # scans 8 s apart: busy from the first to the last
    finally:
        house.close()
