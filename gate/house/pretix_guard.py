"""No list that shrinks the house without a person saying so.

A sync result is compared with what the gates hold before it goes anywhere. It is
held back (not stored, not published; the gates keep the last good list) when:
- it is **empty** (a `checkin_list` pointing at the wrong list, a maintenance answer,
  a new house database against an event whose gates hold a list), unless the last list
  this house published was itself an empty one a person accepted;
- **most positions were skipped** as unusable (pretix's answers changed shape);
- it would **drop an unusual share** of the tickets (more than half, and at least
  MIN_DROP), or of the valid ones, or every valid ticket.

Held, the house raises a `sync` alert that says how to accept the result:
`gate house -c FILE pretix sync --accept-shrink`, which syncs once more and publishes
whatever pretix then says.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Optional

MAX_SHARE = 0.5     # more than this share of the tickets gone at once is held for a person
MIN_DROP = 10       # ... when at least this many go (a small event losing two tickets is not news)

# A position a gate admits: order paid (or pending and valid while pending), not blocked.
VALID_SQL = ("SELECT count(*) FROM {pos} WHERE (order_status = 'p' OR (order_status = 'n' AND valid_if_pending = 1)) "
             "AND blocked = 0 AND secret NOT IN (SELECT secret FROM {blk} WHERE blocked = 1)")


@dataclass
class Held:
    why: str            # empty | skipped | shrink
    text: str
    base_total: int
    base_valid: int
    new_total: int
    new_valid: int
    seen: int
    skipped: int
    full: bool
    at: int


def counts(db, positions: str = "pretix_positions", blocked: str = "pretix_blocked") -> tuple[int, int]:
    """(tickets, valid tickets) in a positions table."""
    total = db.execute(f"SELECT count(*) FROM {positions}").fetchone()[0]
    valid = db.execute(VALID_SQL.format(pos=positions, blk=blocked)).fetchone()[0]
    return total, valid


def baseline(db, state) -> tuple[int, int]:
    """(tickets, valid tickets) the gates hold: the last good pretix data or the last list the house
    published, whichever is larger. With neither (a new or set-aside house database), the last signed
    list the house itself saw on the bus (its holder directory) stands in, so a first sync that comes
    back empty or small is still caught."""
    total, valid = counts(db)
    published = int(state("published_total", "0") or 0)
    if total or published:
        return max(total, published), valid
    try:
        holders = db.execute("SELECT count(*) FROM holders").fetchone()[0]
    except sqlite3.Error:   # no attendance log in this file (a sync on its own)
        holders = 0
    return holders, valid


def judge(base_total: int, base_valid: int, new_total: int, new_valid: int, seen: int, skipped: int,
          empty_accepted: bool, full: bool = True) -> str:
    """Why this result needs a person ('' when it may go out as it is). In a round that re-read only
    a few changed orders, one or two unusable positions are set aside, not held for a person."""
    if skipped and skipped * 2 > seen and (full or skipped >= MIN_DROP):
        return "skipped"
    if new_total == 0 and not empty_accepted:
        return "empty"
    for base, new in ((base_total, new_total), (base_valid, new_valid)):
        drop = base - new
        if base and drop > base * MAX_SHARE and drop >= MIN_DROP:
            return "shrink"
    if base_valid and new_valid == 0 and new_total:
        return "shrink"
    return ""


def explain(why: str, base_total: int, base_valid: int, new_total: int, new_valid: int, seen: int, skipped: int,
            list_id: int, config_path: str) -> str:
    """One sentence for the alert, the log and `pretix status`."""
    if why == "empty":
        what = (f"pretix's check-in list {list_id} came back empty ({seen:,} positions, {skipped:,} unusable)"
                + (f" while the gates hold {base_total:,} tickets" if base_total else ""))
    elif why == "skipped":
        what = f"{skipped:,} of {seen:,} positions pretix sent were unusable (has pretix's API changed?)"
    else:
        what = (f"the list would shrink from {base_total:,} tickets ({base_valid:,} valid) to {new_total:,} "
                f"({new_valid:,} valid)")
    return (f"pretix sync held back: {what}; the gates keep the last list. If this is right: "
            f"gate house -c {config_path or 'FILE'} pretix sync --accept-shrink")


class HeldState:
    """The held result, kept in pretix_state so the CLI, the dashboard and a restarted house all see it."""

    def __init__(self, get, put, delete):
        self._get, self._put, self._delete = get, put, delete

    def load(self) -> Optional[dict]:
        raw = self._get("held")
        if not raw:
            return None
        try:
            held = json.loads(raw)
            return held if isinstance(held, dict) else None
        except ValueError:
            return None

    def save(self, held: Held) -> Held:
        self._put("held", json.dumps(asdict(held)))
        return held

    def clear(self) -> None:
        self._delete("held")
