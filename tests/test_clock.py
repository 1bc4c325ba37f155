"""A gate whose clock is years off: its scan events carry the flag, the house takes them
(instead of dropping them as out of range) and moves them onto its own clock."""

from __future__ import annotations

import time

from gate.bus.codec import pack_scan, unpack_scan
from gate.core.events import ScanEvent
from tests.conftest import api, eve, publish_raw, wait_for  # the house fixture comes from conftest

YEARS_AGO = int(time.time() * 1000) - 3 * 365 * 86_400_000


def ev(ticket, seq, ts, result="admitted", reason="ok"):
    return ScanEvent(id=f"door-z-{seq}-{time.monotonic_ns()}", gate="door-z", seq=seq, ts=ts, event="eve",
                     ticket=ticket, dir="in", result=result, reason=reason, attention=[], clock="unsynced")


def test_clock_flag_travels_and_the_house_orders_by_its_own_clock(broker, house):
    e = unpack_scan(pack_scan(ev("T1", 1, YEARS_AGO)))
    assert e.clock == "unsynced" and e.ts == YEARS_AGO
    assert unpack_scan(pack_scan(ScanEvent("x", "door-a", 1, int(time.time() * 1000), "eve", "T", "in",
                                           "admitted", "ok"))).clock == "ok"
    # Admitted, then annulled (same gate ts), then another admission: all from a clock 3 years behind.
    publish_raw(broker.port, "gate/hall/door-z/scan",
                [pack_scan(ev("T1", 1, YEARS_AGO)),
                 pack_scan(ev("T1", 2, YEARS_AGO, "annulled", "not_passed")),
                 pack_scan(ev("T2", 3, YEARS_AGO + 1000))])
    h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 1 and eve(h)["annulled"] == 1 else None)(
        api(house.cfg)), what="the unsynchronised gate's events counted (T1 annulled, T2 admitted)")
    assert not h["malformed"].get("bad_ts")
    now_min = int(time.time() // 60) * 60000
    recent = {m: n for m, n in eve(h)["per_minute"] if m >= now_min - 60000}
    assert sum(recent.values()) == 1     # shown at the house's time, not three years ago
