"""The attendance log for the box office's CRM, and its export."""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict


def rows(db, counts, holders) -> list[dict]:
    """One row per effective admission (annulled entries left out), with the patron's visit count."""
    out, visits = [], defaultdict(set)
    flagged = {cid for c in counts.events.values() for cid in c.conflicts}
    annulled = {(g, ts) for g, ts in db.execute("SELECT gate, ts FROM scans WHERE result='annulled'")}
    for eid, gate, ts, ev, ticket in db.execute(
            "SELECT id, gate, ts, event, ticket FROM scans WHERE result='admitted' ORDER BY ts"):
        if (gate, ts) in annulled:
            continue
        holder, patron, _ = holders.get(ticket, ("", "", ""))
        if patron:
            visits[patron].add(ev)
        out.append({"ticket": ticket, "holder": holder, "patron": patron, "event": ev, "gate": gate,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts / 1000)),
                     "conflict": eid in flagged})
    for r in out:
        r["visits"] = len(visits[r["patron"]]) if r["patron"] else 1
    return out


def export(service, fmt: str, out) -> int:
    """Write the attendance log as CSV or JSON; returns the number of rows."""
    rows = service.attendance()
    if fmt == "json":
        json.dump(rows, out, indent=1)
        out.write("\n")
    else:
        w = csv.DictWriter(out, fieldnames=["ticket", "holder", "patron", "event", "gate", "time", "conflict", "visits"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)
