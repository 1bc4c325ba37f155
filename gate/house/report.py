"""The night's house report: the figures of one performance, from the attendance log.

`gate house report -c FILE --event EV` (gate/cli/house.py) prints them as one printable HTML
page (gate/house/reportpage.py) or, with `--json`, as JSON for the box office's CRM. Read beside
a running house: the house is built for reading only (gate/house/build.py, `serve=False`), so
the counts (conflicts, annulments, rejections) are the live house's own, and the rest is read
from the log with its own queries. Live scans only: rehearsal scans and look-ups are no part
of a night.

Figures: the arrival curve per door (admissions per minute, annulled ones taken off) and each
door's peak minute; when the house was in (half, 90 %, 95 % and the last of the night's
admissions; how many were in by the curtain); sold, came and no-shows (from the ticket list,
gate/house/roster.py, or pretix's positions); first-time visitors (patrons whose first admission
in the log is tonight's); notable arrivals (tags that asked for attention); rejections by
reason; annulments; conflicts; and how many of tonight's patrons the venue knows by name, by a
patron id, or not at all (walk-up and anonymous tickets: the relationships still to be made).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from typing import Optional

from gate.core.clock import now_ms
from gate.house.build import build_house

MINUTE = 60_000
SHARES = (("half", 0.5), ("ninety", 0.9), ("ninety_five", 0.95))


class UnknownEvent(LookupError):
    """The log has no live scan of this performance, and the config names none such."""

    def __init__(self, event: str, known: list[str]):
        super().__init__(event)
        self.event, self.known = event, known


def iso(ms: Optional[int]) -> Optional[str]:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ms / 1000)) if ms else None


def night_report(cfg, ev: str) -> dict:
    """Every figure of performance `ev` (see the module's docstring); UnknownEvent when there is none."""
    house = build_house(cfg, serve=False)
    try:
        assert house.log is not None and house.state is not None
        db, state = house.log.db, house.state
        known = sorted({r[0] for r in db.execute("SELECT DISTINCT event FROM scans WHERE mode='live' AND event != ''")}
                       | set(cfg.house.capacity) | set(cfg.house.curtain))
        if ev not in known:
            raise UnknownEvent(ev, known)
        detail = state.counts.detail(ev, cfg.house.capacity.get(ev))
        flow = state.flow.summary(ev)
        holders = state.holders_now()
        return {"venue": cfg.house.venue, "event": ev, "generated": iso(now_ms()), **_figures(db, ev, detail, flow,
                                                                                               holders)}
    finally:
        house.close()


def _admissions(db, ev: str) -> list[tuple]:
    """(gate, ts, ticket, tags) of the night's live admissions that stand (annulled ones taken off)."""
    annulled = set(db.execute("SELECT gate, ts FROM scans WHERE event=? AND result='annulled' AND mode='live'", (ev,)))
    out = []
    for gate, ts, ticket, attention in db.execute(
            "SELECT gate, ts, ticket, attention FROM scans WHERE event=? AND result='admitted' AND mode='live' "
            "ORDER BY ts", (ev,)):
        if (gate, ts) in annulled:
            continue
        try:
            tags = [t for t in json.loads(attention or "[]") if isinstance(t, str)]
        except ValueError:
            tags = []
        out.append((gate, ts, ticket, tags))
    return out


def _curve(adm: list[tuple]) -> dict:
    """Cumulative admissions per minute, per door and in all, from the first admission's minute."""
    if not adm:
        return {"start": None, "step": MINUTE, "total": [], "doors": {}}
    first, last = adm[0][1] // MINUTE, adm[-1][1] // MINUTE
    per_door: dict = defaultdict(Counter)
    for gate, ts, _, _ in adm:
        per_door[gate][ts // MINUTE] += 1

    def cumulative(c: Counter) -> list[int]:
        out, n = [], 0
        for m in range(first, last + 1):
            n += c.get(m, 0)
            out.append(n)
        return out
    total: Counter = sum(per_door.values(), Counter())
    return {"start": first * MINUTE, "step": MINUTE, "total": cumulative(total),
            "doors": {g: cumulative(c) for g, c in sorted(per_door.items())},
            "peaks": {g: _peak(c) for g, c in sorted(per_door.items())}}


def _peak(c: Counter) -> dict:
    m, n = max(c.items(), key=lambda kv: (kv[1], -kv[0]))
    return {"per_minute": n, "at": iso(m * MINUTE)}


def _house_in(adm: list[tuple], curtain: Optional[int]) -> dict:
    """When the house was in: the times by which each share of the night's admissions was in."""
    times = [ts for _, ts, _, _ in adm]
    out: dict = {key: iso(times[max(0, int(len(times) * share + 0.999999) - 1)]) if times else None
                 for key, share in SHARES}
    out["last"] = iso(times[-1]) if times else None
    if curtain is not None:
        out["by_curtain"] = sum(1 for t in times if t <= curtain)
        out["after_curtain"] = len(times) - out["by_curtain"]
    return out


def _first_timers(db, ev: str, holders: dict) -> list[dict]:
    """Patrons whose first live admission in the log is tonight's (a patron id on the list is needed)."""
    first: dict[str, tuple] = {}
    annulled = set(db.execute("SELECT gate, ts FROM scans WHERE result='annulled' AND mode='live'"))
    for gate, ts, ev_, ticket in db.execute(
            "SELECT gate, ts, event, ticket FROM scans WHERE result='admitted' AND mode='live' ORDER BY ts"):
        patron = (holders.get(ticket) or ("", ""))[1]
        if patron and patron not in first and (gate, ts) not in annulled:
            first[patron] = (ev_, gate, ts, ticket)
    return [{"patron": p, "holder": holders[t][0], "ticket": t, "gate": g, "time": iso(ts)}
            for p, (e, g, ts, t) in sorted(first.items(), key=lambda kv: kv[1][2]) if e == ev]


def _sold(db, ev: str) -> tuple[Optional[int], dict]:
    """(tickets sold for `ev`, ticket id -> (holder-less) seat of each one the roster still carries)."""
    roster = {t: seat for t, seat in db.execute("SELECT ticket_id, seat FROM roster WHERE event=?", (ev,))} \
        if _has(db, "roster") else {}
    row = db.execute("SELECT sold FROM roster_sold WHERE event=?", (ev,)).fetchone() if _has(db, "roster_sold") else None
    if row is None and _has(db, "pretix_positions"):
        got = db.execute("SELECT count(*) FROM pretix_positions WHERE event=? AND blocked=0 AND (order_status='p' OR "
                         "(order_status='n' AND valid_if_pending))", (ev,)).fetchone()[0]
        return (got or None), roster
    return (row[0] if row else (len(roster) or None)), roster


def _has(db, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None


def _figures(db, ev: str, detail: dict, flow: dict, holders: dict) -> dict:
    adm = _admissions(db, ev)
    came = {t for _, _, t, _ in adm if t}
    sold, roster = _sold(db, ev)
    no_shows = sorted(set(roster) - came)
    name = {t: (holders.get(t) or ("", "", ""))[:2] for t in came}
    by_name = sum(1 for h, _ in name.values() if h)
    with_id = sum(1 for _, p in name.values() if p)
    anonymous = sum(1 for h, p in name.values() if not h and not p)
    curve = _curve(adm)
    peaks = curve.pop("peaks", {})
    doors = {g: {"admitted": series[-1], "peak_per_minute": peaks[g]["per_minute"], "peak_at": peaks[g]["at"],
                 "annulled": detail["by_gate"].get(g, {}).get("annulled", 0),
                 "rejected": detail["by_gate"].get(g, {}).get("rejected", 0)}
             for g, series in curve["doors"].items()}
    notable = [{"time": iso(ts), "gate": g, "ticket": t, "holder": (holders.get(t) or ("",))[0],
                "seat": roster.get(t, ""), "tags": tags} for g, ts, t, tags in adm if tags]
    return {
        "curtain": iso(flow["curtain"]), "curtain_ms": flow["curtain"], "curtain_from": flow["curtain_from"],
        "capacity": detail["capacity"], "sold": sold, "admitted": detail["admitted"], "came": len(came),
        "no_shows": len(no_shows) if roster else (max(0, sold - len(came)) if sold else None),
        "no_show_list": [{"ticket": t, "holder": (holders.get(t) or ("",))[0], "seat": roster[t]} for t in no_shows],
        "exited": detail["exited"], "annulled": detail["annulled"], "rejected": detail["rejected"],
        "rejected_by_reason": dict(sorted(detail["rejected_by_reason"].items(), key=lambda kv: -kv[1])),
        "conflicts": detail["conflicts"], "doors": doors, "curve": curve,
        "house_in": _house_in(adm, flow["curtain"]),
        "first_time": _first_timers(db, ev, holders), "notable": notable,
        "known": {"by_name": by_name, "with_patron_id": with_id, "anonymous": anonymous, "patrons": len(came),
                  "share_by_name": round(by_name / len(came), 3) if came else None},
    }
