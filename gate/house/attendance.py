"""The attendance log for the box office's CRM, and its export.

One row per effective admission (annulled entries left out) with the patron's visit count,
whether this was their first visit, the tags that asked for attention, and pretix's order
code and position where the house syncs with pretix; then one row per no-show (a ticket
sold for the event but never admitted). CSV cells are made spreadsheet-safe: a holder
named `=HYPERLINK(...)` stays text.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections import defaultdict

from gate.house.log import COUNTED

COLUMNS = ["ticket", "holder", "patron", "event", "gate", "time", "conflict", "visits", "kind", "first_time",
           "tags", "order", "position"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _pretix_positions(db) -> dict:
    """ticket id -> (order code, position number, event, holder, email, valid) from the pretix sync, if any."""
    try:
        rows = db.execute("SELECT ticket_id, order_code, positionid, event, holder, email, blocked, order_status, "
                          "valid_if_pending FROM pretix_positions").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {r[0]: (r[1], r[2], r[3], r[4], r[5], not r[6] and (r[7] == "p" or (r[7] == "n" and r[8])))
            for r in rows}


def rows(db, flagged: set, holders: dict) -> list[dict]:
    """Admissions, then no-shows (see the module's docstring); `flagged` are the ids of admissions
    flagged as conflicts, `holders` maps ticket id -> (holder, patron, tags)."""
    out: list[dict] = []
    visits: dict = defaultdict(set)
    firsts: dict = {}
    annulled = {(g, ts) for g, ts in db.execute("SELECT gate, ts FROM scans WHERE result='annulled' AND mode='live'")}
    pretix = _pretix_positions(db)
    admitted = set()
    for eid, gate, ts, ev, ticket, attention in db.execute(
            "SELECT id, gate, ts, event, ticket, attention FROM scans WHERE result='admitted' AND mode='live' "
            f"AND {COUNTED} ORDER BY ts"):   # gates-word: not what was flagged or set aside
        if (gate, ts) in annulled:
            continue
        admitted.add(ticket)
        holder, patron, _ = holders.get(ticket, ("", "", ""))
        order, position = pretix.get(ticket, ("", ""))[:2]
        if patron:
            visits[patron].add(ev)
            firsts.setdefault(patron, ev)
        try:
            tags = [t for t in json.loads(attention or "[]") if isinstance(t, str)]
        except ValueError:
            tags = []
        out.append({"kind": "admitted", "ticket": ticket, "holder": holder, "patron": patron, "event": ev,
                    "gate": gate, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts / 1000)),
                    "conflict": eid in flagged, "tags": ";".join(tags), "order": order, "position": position})
    for r in out:
        p = r["patron"]
        r["visits"] = len(visits[p]) if p else 1
        r["first_time"] = bool(p) and firsts[p] == r["event"] and len(visits[p]) == 1
    for tid, (order, position, ev, holder, email, valid) in sorted(pretix.items(), key=lambda kv: kv[1][:2]):
        if valid and tid not in admitted:
            out.append({"kind": "no_show", "ticket": tid, "holder": holders.get(tid, (holder,))[0] or holder,
                        "patron": email, "event": ev, "gate": "", "time": "", "conflict": False,
                        "visits": len(visits[email]) if email else 0, "first_time": False, "tags": "",
                        "order": order, "position": position})
    return out


def spreadsheet_safe(value):
    """Text a spreadsheet shows as text: a leading =, +, -, @ (or tab/CR) would make it a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def export(house, fmt: str, out) -> int:
    """Write the attendance log of `house` (anything with `attendance()`: the built house,
    gate/house/build.py) as CSV or JSON; returns the number of rows."""
    data = house.attendance()
    if fmt == "json":
        json.dump(data, out, indent=1)
        out.write("\n")
    else:
        w = csv.DictWriter(out, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({k: spreadsheet_safe(v) for k, v in r.items()} for r in data)
    return len(data)
