"""What the house's figures mean to a person: the alert rules, as pure functions.

Each rule reads figures (a performance's house object with its `flow`, the lanes, the doors'
security signals) and returns the conditions that stand now as `Condition`s, or an arrival's
alert; gate/house/watch.py raises what stands and clears what no longer does. A rule gets the
keys that stand already (`standing`), so a condition clears only well below where it was
raised (hysteresis): a door at 79 % busy does not flap a queue alert on and off.

Every text says what happened and what a person can do about it.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

MINUTE = 60_000
NEAR_FULL, NEAR_CLEAR = 0.90, 0.85          # capacity: warn at 90 % inside, clear below 85 %
QUEUE_BUSY, QUEUE_CLEAR, IDLE_BUSY = 0.80, 0.60, 0.20
IN_USE_MS = 30 * MINUTE                      # a door that scanned within this long is one of tonight's
CURTAIN_WATCH_MIN = {"rate": 30, "profile": 90}   # minutes before the curtain a method's forecast is trusted
CURTAIN_LATE_MIN = 2                         # the forecast must run this far past the curtain ...
CURTAIN_MIN_PEOPLE, CURTAIN_SHARE = 10, 0.03   # ... with at least this many more outside than usual
CURTAIN_CRITICAL_MIN = 10                    # within this long of the curtain it is critical
WARM_UP_MS = 3 * MINUTE                      # a rate from the doors' first minutes is noise: no forecast alert yet
IMPLAUSIBLE_QUIET_MS = 10 * MINUTE


class Condition(NamedTuple):
    key: str
    kind: str
    level: str
    text: str
    event: str = ""
    gate: str = ""
    figure: float = 0.0    # a text is sent again only when this moves by a quarter (or the level changes)


def hhmm(ms: Optional[int]) -> str:
    return time.strftime("%H:%M", time.localtime(ms / 1000)) if ms else "?"


def capacity(house: dict, standing: set) -> list[Condition]:
    """A performance 90 % full (`warn`), and full (`critical`)."""
    ev, inside, cap = house["event"], house["inside"], house.get("capacity")
    if not cap:
        return []
    if inside > cap and f"capacity:{ev}" in standing:
        return []   # past capacity: the house's own alarm says so (gate/house/word.py, critical)
    if inside >= cap:
        return [Condition(f"capacity:full:{ev}", "capacity", "critical",
                          f"{ev} is full: {inside:,} inside, capacity {cap:,}. Hold the queue at the doors: the "
                          "gates still admit valid tickets.", ev, figure=inside)]
    near, full = f"capacity:near:{ev}", f"capacity:full:{ev}"
    if inside >= NEAR_FULL * cap or ((near in standing or full in standing) and inside >= NEAR_CLEAR * cap):
        return [Condition(near, "capacity", "warn",
                          f"{ev} is {100 * inside // cap} % full: {inside:,} of {cap:,} inside. Get ready to hold "
                          "the queue.", ev, figure=inside)]
    return []


def curtain(house: dict, now: int, standing: set) -> list[Condition]:
    """The curtain at risk: the forecast runs past it with more patrons outside than on a usual night."""
    ev, fl = house["event"], house.get("flow") or {}
    at, fc, method = fl.get("curtain"), fl.get("forecast"), fl.get("method")
    if at is None or method not in CURTAIN_WATCH_MIN:
        return []
    before = (at - now) / MINUTE
    if not -1 <= before <= CURTAIN_WATCH_MIN[method]:
        return []
    if method == "rate" and (fl.get("first") is None or now - fl["first"] < WARM_UP_MS):
        return []
    expected = fl.get("expected") or fl.get("sold") or 0
    excess = (fl.get("outside_at_curtain") or 0) - (fl.get("usual_late") or 0)
    need = max(CURTAIN_MIN_PEOPLE, CURTAIN_SHARE * expected)
    key = f"flow:curtain:{ev}"
    if key in standing:
        need *= 0.7
    late = fc is None or (fl.get("past_curtain_min") or 0) >= CURTAIN_LATE_MIN   # None: nobody coming in now
    if not (fl.get("past_curtain") and late and excess >= need):
        return []
    doors = sum(1 for d in (fl.get("doors") or {}).values() if d.get("rate"))
    outside = fl.get("outside_at_curtain") or 0
    pace = (f"{fl.get('rate', 0):g} a minute at {doors} door{'s' if doors != 1 else ''}; all in by about {hhmm(fc)}"
            if fc is not None else "nobody came in for the last 5 minutes")
    return [Condition(key, "flow", "critical" if before <= CURTAIN_CRITICAL_MIN else "warn",
                      f"Curtain at risk for {ev}: about {outside:,} patrons will still be outside at {hhmm(at)} "
                      f"({pace}, {method} forecast). Hold the curtain, or open another door.", ev, figure=outside)]


def queues(lanes: dict, doors: dict, now: int, standing: set) -> list[Condition]:
    """A door with a queue while another that could take patrons stands nearly idle. `lanes`: gate ->
    busy share, rate, last scan (gate/house/flow.py); `doors`: gate -> state and mode as its status says."""
    def usable(g: str) -> bool:
        d = doors.get(g, {})
        return d.get("state") == "online" and not d.get("out_of_order") and d.get("mode", "") in ("", "entry")
    idle = sorted(g for g, lane in lanes.items()
                  if usable(g) and now - lane["last"] < IN_USE_MS and (lane["busy"] or 0) <= IDLE_BUSY)
    out = []
    for g, lane in sorted(lanes.items()):
        key = f"flow:queue:{g}"
        busy = lane["busy"] or 0
        if busy >= QUEUE_BUSY or (key in standing and busy >= QUEUE_CLEAR):
            others = [i for i in idle if i != g]
            if others:
                out.append(Condition(key, "flow", "warn",
                                     f"{g} has a queue (busy {round(100 * busy)} % of the last 5 minutes, "
                                     f"{lane['rate']:g} a minute) while {', '.join(others)} "
                                     f"{'is' if len(others) == 1 else 'are'} nearly idle: send patrons to "
                                     f"{others[0]}.", gate=g, figure=lane["rate"]))
    return out


def security(forged: dict, implausible: dict, now: int) -> list[Condition]:
    """A burst of forged codes at a door; a door claiming what no lane can do."""
    out = [Condition(f"security:forged:{g}", "security", "critical",
                     f"{g} refused {n} forged codes in the last minute: someone may be trying altered or "
                     "copied tickets there. Send a steward to the door.", gate=g, figure=n)
           for g, n in sorted(forged.items())]
    for g, (why, noticed, ev) in sorted(implausible.items()):
        if now - noticed < IMPLAUSIBLE_QUIET_MS:
            out.append(Condition(f"security:claims:{g}", "security", "critical",
                                 f"{g} reports what no lane can do ({why}): its reports are suspect. If its Pi is "
                                 f"missing: gate broker revoke {g}, then gate house set-aside {g}.", ev, g))
    return out


def arrival(a: dict) -> tuple[str, str]:
    """(level, text) of a notable arrival (gate/house/flow.py): help is `warn`, a greeting `info`."""
    who = a["holder"] or f"ticket {a['ticket']}"
    where = f"at {a['gate']}" + (f", seat {a['seat']}" if a["seat"] else "")
    tags = [t for t in a["tags"] if t != "first_visit"]
    said = f" ({', '.join(t.replace('_', ' ') for t in tags)})" if tags else ""
    if a["assist"]:
        return "warn", f"Assist {who}{said} {where}."
    if "first_visit" in a["tags"] and not tags:
        return "info", f"First visit: welcome {who} {where}."
    first = " First visit." if "first_visit" in a["tags"] else ""
    return "info", f"Greet {who}{said} {where}.{first}"
