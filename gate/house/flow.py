"""Door flow: how fast each door takes people in, how busy each lane is, who is still to come,
and whether the house will be in by the curtain (docs/contract.md, "Alerts and door flow").

Kept incrementally as the house counts each event (HouseState calls `count` under its lock; this
class has a lock of its own for its readers): per performance and door, admissions in unix-minute
buckets; per lane, the milliseconds it was busy in each minute; per performance, the tickets in
now and how many of them are on the ticket list. Nothing here ever reads the attendance log:
a figure is a few bucket sums over the last WINDOW_MIN minutes.

A lane is busy between two scans that follow within BUSY_GAP_MS (the next patron was waiting),
and for SERVICE_MS around a scan with nobody close behind: busy near 100 % means a queue.

It also notes, for the alerts (gate/house/watch.py): notable arrivals (attention tags, or a
patron's first visit by the log), forged codes per door, doors scanning in rehearsal while the
venue is live, and claims no lane can make (more than LANE_MAX_PER_MIN admissions in a minute,
or stamps well ahead of the house's clock). Bounded whatever the gates send.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from gate.core.clock import now_ms
from gate.core.events import ScanEvent
from gate.house import forecast
from gate.house.curtain import Curtains
from gate.house.roster import Roster

MINUTE = 60_000
WINDOW_MIN = 5              # "now": the entry rate and busy share over the last five minutes
BUSY_GAP_MS = 8_000         # scans this close: the lane was busy in between
SERVICE_MS = 3_000          # a scan with nobody close behind still took the lane this long
MAX_MINUTES = 360           # minute buckets kept per performance and door (six hours)
MAX_DOORS = 64              # doors per performance with figures of their own (more: totals only)
MAX_LANES = 256             # lanes tracked (gate/house/gaps.py's MAX_GATES)
LANE_MAX_PER_MIN = 120      # admissions in one minute no lane can pass
AHEAD_MS = 10 * MINUTE      # a scan stamped this far ahead of the house's clock is no real scan
FRESH_MS = 2 * MINUTE       # an arrival older than this (a drained outbox) is history, not news
FORGED_BURST, FORGED_SPAN_MS, FORGED_KEPT = 10, MINUTE, 100
PAST_MS = 6 * 3600_000      # a performance whose last admission is this old is a past night
TONIGHT_MS = 12 * 3600_000  # the dashboard's curves: performances admitted to within this long
FIRST_VISIT_TAGS = frozenset({"first_visit"})


def _bump(minutes: dict, m: int, n: int, cap: Optional[int] = None) -> None:
    """Add n to minute m (at most `cap`); beyond MAX_MINUTES minutes the oldest go, 60 at a time
    (a minute's first scan sorts the keys once an hour, not per scan)."""
    v = minutes.get(m, 0) + n
    minutes[m] = v if cap is None else min(cap, v)
    if len(minutes) > MAX_MINUTES + 60:
        for old in sorted(minutes)[:len(minutes) - MAX_MINUTES]:
            del minutes[old]


def window_sum(minutes: dict, now: int, first: Optional[int]) -> tuple[int, float]:
    """(sum over the window's minutes, the window's length in minutes): the last WINDOW_MIN minutes,
    or since `first` when that is later, at least one minute."""
    now_min = now // MINUTE
    start = (now_min - WINDOW_MIN + 1) * MINUTE
    if first is not None:
        start = max(start, first // MINUTE * MINUTE)
    span = max(MINUTE, now - start) / MINUTE
    return sum(minutes.get(m, 0) for m in range(start // MINUTE, now_min + 1)), span


@dataclass
class Door:
    minutes: dict = field(default_factory=dict)   # unix minute -> admissions at this door
    admitted: int = 0
    first: Optional[int] = None
    peak: int = 0                                  # most admissions in one minute


@dataclass
class Night:
    minutes: dict = field(default_factory=dict)   # unix minute -> admissions, all doors
    doors: dict = field(default_factory=dict)     # gate -> Door
    first: Optional[int] = None
    last: Optional[int] = None
    tickets: set = field(default_factory=set)     # tickets in (admitted, not annulled)
    came: int = 0                                  # of those, on the ticket list for this performance
    admissions: int = 0


@dataclass
class Lane:
    busy: dict = field(default_factory=dict)      # unix minute -> ms busy
    last: int = 0
    first: Optional[int] = None


class DoorFlow:
    """See the module's docstring. `assist_tags`: tags that ask staff to help, not only to greet."""

    def __init__(self, curtains: Optional[Curtains] = None, assist_tags=("wheelchair", "access", "attention"),
                 clock: Callable[[], int] = now_ms):
        self.lock = threading.Lock()
        self.curtains = curtains or Curtains({})
        self.assist_tags = frozenset(assist_tags)
        self.clock = clock
        self.nights: dict[str, Night] = {}
        self.lanes: dict[str, Lane] = {}
        self.roster = Roster({}, {})
        self.quiet = False                        # restoring from the log: nothing is news
        self.arrivals: deque = deque(maxlen=500)  # notable arrivals for the alerts, oldest first
        self.forged: dict[str, deque] = {}        # gate -> times of its latest forged codes
        self.rehearsing: dict[str, int] = {}      # gate -> its last rehearsal scan while the venue was live
        self.implausible: dict[str, tuple] = {}   # gate -> (why, when noticed, performance) of its latest impossible claim
        self.patron_night: dict[str, str] = {}    # patron -> the first performance they came to
        self.returning: set[str] = set()          # patrons who came to more than one
        self._profiles: dict = {}                 # (night, admissions, curtain) -> its profile (past nights do not change)
        self._history: tuple = (None, False)      # (performance, minute, nights) -> whether the log holds a past night

    # -- counting (the intake's thread, under the state's lock) ------------------------------
    def count(self, e: ScanEvent, counts, holders: dict, venue_mode: str = "live") -> None:
        """One counted event; `counts` is the HouseCounts it was just counted in, `holders` the directory.
        On the intake's path for every event: the common case (a live admission) is kept short."""
        result = e.result
        with self.lock:
            if e.mode != "live":
                if e.mode == "test" and venue_mode == "live" and (e.gate in self.rehearsing
                                                                  or len(self.rehearsing) < MAX_LANES):
                    self.rehearsing[e.gate] = e.ts
                return
            if result == "admitted" or result == "rejected":
                self._lane(e.gate, e.ts)
                if result == "rejected":
                    if e.reason == "forged" and (e.gate in self.forged or len(self.forged) < MAX_LANES):
                        self.forged.setdefault(e.gate, deque(maxlen=FORGED_KEPT)).append(e.ts)
                    return
            elif result != "annulled":
                return
            if not e.event:
                return
            night = self.nights.get(e.event)
            if night is None:
                night = self.nights[e.event] = Night()
            self._admission(night, e, 1 if result == "admitted" else -1)
            if e.ticket:
                t = counts.tickets.get((e.event, e.ticket))
                now_in = t is not None and t.admitted
                if now_in != (e.ticket in night.tickets):
                    self._ticket(night, e, now_in, holders)

    def _lane(self, gate: str, ts: int) -> None:
        lane = self.lanes.get(gate)
        if lane is None:
            if len(self.lanes) >= MAX_LANES:
                return
            lane = self.lanes[gate] = Lane(first=ts)
        gap = ts - lane.last
        m = ts // MINUTE
        busy = lane.busy
        if m in busy:
            busy[m] = min(MINUTE, busy[m] + (gap if 0 < gap <= BUSY_GAP_MS else SERVICE_MS))
        else:
            _bump(busy, m, gap if 0 < gap <= BUSY_GAP_MS else SERVICE_MS, MINUTE)
        if ts > lane.last:
            lane.last = ts

    def _admission(self, night: Night, e: ScanEvent, n: int) -> None:
        m = e.ts // MINUTE
        minutes = night.minutes
        if n < 0 and not minutes.get(m):
            return   # an annulment of an admission never counted here
        if m in minutes:
            minutes[m] += n
        else:
            _bump(minutes, m, n)
        night.admissions += n
        door = night.doors.get(e.gate)
        if door is None and len(night.doors) < MAX_DOORS:
            door = night.doors[e.gate] = Door()
        if door is not None and (n > 0 or door.minutes.get(m)):
            dm = door.minutes
            if m in dm:
                dm[m] += n
            else:
                _bump(dm, m, n)
            door.admitted += n
            v = dm[m]
            if v > door.peak:
                door.peak = v
            if v > LANE_MAX_PER_MIN:
                self._impossible(e, f"{v} admissions in one minute")
            if n > 0 and (door.first is None or e.ts < door.first):
                door.first = e.ts
        if n > 0:
            ts = e.ts
            if night.first is None or ts < night.first:
                night.first = ts
            if night.last is None or ts > night.last:
                night.last = ts
                if ts > self.clock() + AHEAD_MS:
                    self._impossible(e, "stamped ahead of the house's clock")

    def _impossible(self, e: ScanEvent, why: str) -> None:
        if e.gate in self.implausible or len(self.implausible) < MAX_LANES:
            self.implausible[e.gate] = (why, self.clock(), e.event)

    def _ticket(self, night: Night, e: ScanEvent, now_in: bool, holders: dict) -> None:
        """A ticket came in (or its admission was annulled): who is in, and a notable arrival."""
        on_list = self.roster.tickets.get(e.ticket, ("",))[0] == e.event
        if not now_in:
            night.tickets.discard(e.ticket)
            night.came -= on_list
            return
        night.tickets.add(e.ticket)
        night.came += on_list
        holder = holders.get(e.ticket)
        first_visit = False
        if holder is not None and holder[1]:
            patron = holder[1]
            seen = self.patron_night.setdefault(patron, e.event)
            if seen != e.event:
                self.returning.add(patron)
            elif patron not in self.returning:
                first_visit = self._has_history(e.event)
        if not (e.attention or first_visit) or self.quiet or e.ts < self.clock() - FRESH_MS:
            return
        tags = list(e.attention)
        if first_visit and not FIRST_VISIT_TAGS & set(tags):
            tags.append("first_visit")
        self.arrivals.append({"event": e.event, "gate": e.gate, "ticket": e.ticket, "ts": e.ts,
                              "holder": holder[0] if holder else "",
                              "seat": self.roster.tickets.get(e.ticket, ("", ""))[1],
                              "tags": tags, "assist": bool(self.assist_tags & set(tags))})

    def _has_history(self, ev: str) -> bool:
        """The log holds a past night: "first visit" means something only then (looked at once a minute)."""
        now = self.clock()
        key = (ev, now // MINUTE, len(self.nights))
        if self._history[0] != key:
            limit = now - PAST_MS
            self._history = (key, any(name != ev and n.last is not None and n.last < limit
                                      and n.admissions >= forecast.MIN_NIGHT for name, n in self.nights.items()))
        return self._history[1]

    def clear(self) -> None:
        """Forget what was counted (the counts are counted again from the log: a set-aside changed);
        quiet until the caller sets `quiet` back to False."""
        with self.lock:
            self.nights.clear()
            self.lanes.clear()
            self.forged.clear()
            self.patron_night.clear()
            self.returning.clear()
            self._profiles.clear()
            self.quiet = True

    # -- the ticket list and pretix (the intake's and the watch's threads) -----------------------
    def set_roster(self, roster: Roster) -> None:
        """A newly applied list: how many of those in are on it is counted again, once."""
        with self.lock:
            self.roster = roster
            for ev, night in self.nights.items():
                night.came = sum(1 for t in night.tickets if roster.tickets.get(t, ("",))[0] == ev)

    def set_pretix_starts(self, starts: dict) -> None:
        with self.lock:
            self.curtains.set_pretix(starts)

    # -- reading (any thread) ------------------------------------------------------------
    def summary(self, ev: str, now: Optional[int] = None) -> dict:
        """The `flow` object of one performance (the retained house object and /api/house)."""
        with self.lock:
            return self._summary(ev, self.clock() if now is None else now)

    def detail(self, ev: str, now: Optional[int] = None) -> dict:
        """`summary` plus the arrival curves per door and the forecast's line, for tonight's performances."""
        with self.lock:
            now = self.clock() if now is None else now
            out = self._summary(ev, now)
            night = self.nights.get(ev)
            if night is not None and night.last is not None and now - night.last < TONIGHT_MS:
                out["curve"] = self._curve(night, now, out)
            return out

    def _summary(self, ev: str, now: int) -> dict:
        night = self.nights.get(ev) or Night()
        n, span = window_sum(night.minutes, now, night.first)
        rate = n / span
        doors = {}
        for gate, door in sorted(night.doors.items()):
            dn, dspan = window_sum(door.minutes, now, door.first)
            doors[gate] = {"rate": round(dn / dspan, 1), "busy": self._busy(gate, now), "admitted": door.admitted,
                           "peak": door.peak}
        curtain, source = self.curtains.of(ev, night.first, now)
        sold = self.roster.sold.get(ev)
        still = max(0, sold - night.came) if sold is not None else None
        prof, nights, no_show = self._past(ev, curtain)
        if prof is not None and curtain is not None and sold is not None:
            fc = forecast.by_profile(now, sold, night.came, curtain, prof, no_show, rate, night.last)
        else:
            fc = forecast.by_rate(now, still, rate, curtain, night.last)
        return {"rate": round(rate, 1), "window_min": WINDOW_MIN, "first": night.first, "doors": doors, "sold": sold,
                "in": night.came,
                "still_expected": still, "curtain": curtain, "curtain_from": source, **fc,
                "nights": nights, "no_show": None if no_show is None else round(no_show, 3)}

    def _busy(self, gate: str, now: int) -> Optional[float]:
        lane = self.lanes.get(gate)
        if lane is None:
            return None
        ms, span = window_sum(lane.busy, now, lane.first)
        return round(min(1.0, ms / (span * MINUTE)), 2)

    def _past(self, ev: str, curtain: Optional[int]) -> tuple[Optional[list], int, Optional[float]]:
        """(mean arrival profile, nights it averages, their mean no-show rate) of the past nights."""
        if curtain is None:
            return None, 0, None
        limit = self.clock() - PAST_MS
        past = sorted(((n.last, name, n) for name, n in self.nights.items()
                       if name != ev and n.last is not None and n.last < limit
                       and n.admissions >= forecast.MIN_NIGHT and n.first is not None), reverse=True)
        profiles, no_shows = [], []
        for _, name, n in past[:forecast.MAX_NIGHTS]:
            at = self.curtains.usual(name, n.first or 0, curtain)
            key = (name, n.admissions, at)
            if key not in self._profiles:
                if len(self._profiles) > 4 * forecast.MAX_NIGHTS:
                    self._profiles.clear()
                self._profiles[key] = forecast.profile(n.minutes, at) if at is not None else None
            if self._profiles[key] is not None:
                profiles.append(self._profiles[key])
                sold = self.roster.sold.get(name)
                if sold:
                    no_shows.append(max(0.0, 1 - len(n.tickets) / sold))
        return forecast.mean(profiles), len(profiles), (sum(no_shows) / len(no_shows) if no_shows else None)

    def _curve(self, night: Night, now: int, fc: dict) -> dict:
        """Cumulative admissions per minute for each door and in all, and the forecast's line from now."""
        start = night.first // MINUTE if night.first is not None else now // MINUTE
        start = max(start, now // MINUTE - MAX_MINUTES + 1)
        end = now // MINUTE

        def cumulative(minutes: dict) -> list[int]:
            total = sum(v for m, v in minutes.items() if m < start)
            out = []
            for m in range(start, end + 1):
                total += minutes.get(m, 0)
                out.append(total)
            return out
        total = cumulative(night.minutes)
        line = []
        if fc.get("forecast") and fc["forecast"] > now and total:
            coming = fc.get("coming", fc.get("still_expected")) or 0
            line = [[now, total[-1]], [fc["forecast"], total[-1] + coming]]
        return {"start": start * MINUTE, "step": MINUTE, "total": total,
                "doors": {g: cumulative(d.minutes) for g, d in sorted(night.doors.items())}, "forecast": line}

    # -- for the alerts (the watch's thread) ----------------------------------------------------
    def take_arrivals(self) -> list[dict]:
        with self.lock:
            out = list(self.arrivals)
            self.arrivals.clear()
            return out

    def lanes_now(self, now: Optional[int] = None) -> dict[str, dict]:
        """gate -> {"busy": share, "rate": admissions a minute (all performances), "last": last scan}."""
        with self.lock:
            now = self.clock() if now is None else now
            rates: dict[str, float] = {}
            for night in self.nights.values():
                if night.last is not None and now - night.last < WINDOW_MIN * MINUTE:
                    for gate, door in night.doors.items():
                        n, span = window_sum(door.minutes, now, door.first)
                        rates[gate] = rates.get(gate, 0.0) + n / span
            return {g: {"busy": self._busy(g, now), "rate": round(rates.get(g, 0.0), 1), "last": lane.last}
                    for g, lane in self.lanes.items()}

    def forged_bursts(self, now: Optional[int] = None) -> dict[str, int]:
        """gate -> forged codes in the last minute, for doors with FORGED_BURST or more."""
        with self.lock:
            now = self.clock() if now is None else now
            out = {}
            for gate, times in self.forged.items():
                n = sum(1 for t in times if now - FORGED_SPAN_MS <= t <= now + AHEAD_MS)
                if n >= FORGED_BURST:
                    out[gate] = n
            return out

    def signals(self) -> tuple[dict, dict]:
        """(gate -> last rehearsal scan while live, gate -> (why, when noticed, performance) of its latest
        impossible claim)."""
        with self.lock:
            return dict(self.rehearsing), dict(self.implausible)

    def venue_live_again(self) -> None:
        """Going live (or into rehearsal) starts the rehearsal watch afresh."""
        with self.lock:
            self.rehearsing.clear()
