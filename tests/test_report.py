"""The night's house report (`gate house report`): figures from a real attendance log with a known
night in it, the same as JSON and on one self-contained printable page; the command's exits."""

from __future__ import annotations

import calendar
import json
import os
import re

import pytest

from gate.core.events import ScanEvent, Ticket
from gate.core.storage import HouseFiles
from gate.house.log import AttendanceLog
from gate.house.roster import Roster
from tests.conftest import run_gate_cli

UTC = {"TZ": "UTC"}


def at(hhmmss: str, day: int = 23) -> int:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return calendar.timegm((2026, 11, day, h, m, s)) * 1000


@pytest.fixture
def night(tmp_path):
    """A house config and its log: Monday's night and tonight's (eve), ten tickets sold for tonight."""
    path = tmp_path / "house.toml"
    path.write_text(f'[house]\nvenue = "hall"\ncapacity = {{ "eve" = 50 }}\ncurtain = {{ "eve" = "2026-11-23T19:02" }}\n'
                    f'[storage]\ndir = "{tmp_path}/house"\n')
    log = AttendanceLog(HouseFiles.of(tmp_path / "house").log)
    names = {"T0": ("Ada Lovelace", "p-ada"), "T1": ("Alan Turing", "p-alan"), "T2": ("", ""),
             "T3": ("Grace Hopper", ""), "T4": ("Guest 4", "p-4"), "T5": ("Guest 5", "p-5"), "T6": ("Guest 6", "p-6"),
             "T7": ("Guest 7", "p-7"), "T8": ("Guest 8", ""), "T9": ("", ""), "M0": ("Ada Lovelace", "p-ada")}
    tickets = [Ticket(t, "mon" if t == "M0" else "eve", "", h, f"A{i}", patron=p)
               for i, (t, (h, p)) in enumerate(names.items())]
    log.replace_holders(tickets)
    Roster.write(log.db, tickets)
    seq = iter(range(1, 1000))

    def e(gate, ticket, ts, result="admitted", reason="ok", event="eve", attention=()):
        n = next(seq)
        return ScanEvent(f"{gate}-{n}", gate, n, ts, event, ticket, "in", result, reason, attention=list(attention))
    log.add([
        e("door-a", "M0", at("19:10:00", 16), event="mon"),   # Ada came last week
        e("door-a", "T0", at("19:00:00")), e("door-a", "T1", at("19:00:30"), attention=["first_visit"]),
        e("door-b", "T4", at("19:01:00")), e("door-a", "T2", at("19:01:10"), attention=["wheelchair"]),
        e("door-b", "T5", at("19:01:20")), e("door-b", "T6", at("19:01:40")),
        e("door-b", "T6", at("19:01:40"), "annulled", "not_passed"),   # nobody walked through
        e("door-a", "T3", at("19:02:00")),
        e("door-b", "T0", at("19:05:00")),                            # Ada's ticket again: a conflict
        e("door-a", "", at("19:03:00"), "rejected", "forged", event=""),
        e("door-a", "X1", at("19:03:05"), "rejected", "already_used"),
        e("door-b", "X2", at("19:03:10"), "rejected", "already_used"),
        e("door-c", "R1", at("19:03:30"), "rejected", "revoked"),
    ])
    test_scan = ScanEvent("door-c-r", "door-c", 999, at("19:04:00"), "eve", "T7", "in", "admitted", "ok", mode="test")
    log.add([test_scan])   # a rehearsal scan: no part of the night
    log.close()
    return path


def test_report_figures_as_json_for_the_crm(night):
    r = run_gate_cli("house", "report", "-c", str(night), "--event", "eve", "--json", env=UTC)
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert (f["event"], f["sold"], f["came"], f["no_shows"]) == ("eve", 10, 6, 4)
    assert [n["ticket"] for n in f["no_show_list"]] == ["T6", "T7", "T8", "T9"]   # T6 annulled: never came in
    # door-a's forged code named no event: it is not one of tonight's rejections
    assert f["doors"]["door-a"] == {"admitted": 4, "peak_per_minute": 2, "peak_at": "2026-11-23T19:00:00+0000",
                                    "annulled": 0, "rejected": 1}
    assert f["doors"]["door-b"]["admitted"] == 3 and f["doors"]["door-b"]["annulled"] == 1
    assert f["doors"]["door-b"]["peak_per_minute"] == 2
    assert f["curve"]["start"] == at("19:00:00") and f["curve"]["total"] == [2, 5, 6, 6, 6, 7]
    assert f["curve"]["doors"]["door-a"] == [2, 3, 4, 4, 4, 4]
    assert f["house_in"]["half"] == "2026-11-23T19:01:10+0000" and f["house_in"]["last"] == "2026-11-23T19:05:00+0000"
    assert (f["house_in"]["by_curtain"], f["house_in"]["after_curtain"]) == (6, 1)
    assert f["curtain"] == "2026-11-23T19:02:00+0000" and f["curtain_from"] == "config"
    assert f["rejected_by_reason"] == {"already_used": 2, "revoked": 1}
    assert f["annulled"] == 1
    [c] = f["conflicts"]
    assert (c["ticket"], c["first_gate"], c["gate"]) == ("T0", "door-a", "door-b")
    # Alan, Guest 4 and Guest 5 came for the first time; Ada came last week.
    assert [p["patron"] for p in f["first_time"]] == ["p-alan", "p-4", "p-5"]
    assert [(a["holder"], a["seat"], a["tags"]) for a in f["notable"]] == [
        ("Alan Turing", "A1", ["first_visit"]), ("", "A2", ["wheelchair"])]
    # Six patrons: five known by name (T0, T1, T3, T4, T5), three with a patron id, one anonymous (T2).
    assert f["known"] == {"by_name": 5, "with_patron_id": 4, "anonymous": 1, "patrons": 6, "share_by_name": 0.833}


def test_report_page_is_self_contained_and_printable(night, tmp_path):
    out = tmp_path / "eve.html"
    r = run_gate_cli("house", "report", "-c", str(night), "--event", "eve", "--out", str(out), env=UTC)
    assert r.returncode == 0, r.stderr
    assert f"report for eve written to {out}" in r.stderr
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert not re.search(r'(src|href)="', page)            # nothing loaded from anywhere
    assert page.count("<polyline") == 3                    # door-a, door-b and all doors
    assert "curtain 19:02" in page and "@page" in page
    for text in ("Arrivals per door", "When the house was in", "No-shows", "First-time visitors", "Notable arrivals",
                 "Rejections by reason", "Conflicts", "1 anonymous", "Alan Turing"):
        assert text in page, text
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".report-")]   # the temporary file went


def test_report_escapes_what_the_list_says(tmp_path):
    path = tmp_path / "house.toml"
    path.write_text(f'[house]\nvenue = "hall"\n[storage]\ndir = "{tmp_path}/house"\n')
    log = AttendanceLog(HouseFiles.of(tmp_path / "house").log)
    log.replace_holders([Ticket("T1", "eve", "", '<script>alert(1)</script>', "", tags=())])
    log.add([ScanEvent("a-1", "door-a", 1, at("19:00:00"), "eve", "T1", "in", "admitted", "ok", attention=["<b>"])])
    log.close()
    r = run_gate_cli("house", "report", "-c", str(path), "--event", "eve", env=UTC)
    assert r.returncode == 0 and "<script>" not in r.stdout and "&lt;script&gt;" in r.stdout


def test_report_unknown_event_or_no_event_is_bad_usage(night):
    r = run_gate_cli("house", "report", "-c", str(night), "--event", "tomorrow")
    assert r.returncode == 2 and "no live scan of performance 'tomorrow'" in r.stderr and "eve" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_gate_cli("house", "report", "-c", str(night))
    assert r.returncode == 2 and "--event" in r.stderr
    r = run_gate_cli("house", "report", "-c", str(night), "--event", "eve", "--out", "/nonexistent/dir/x.html")
    assert r.returncode == 2 and "Traceback" not in r.stderr
