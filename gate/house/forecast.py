"""When will everyone expected be in? Two ways, pure functions over figures the flow keeps.

- `rate`: the patrons still expected (sold, not yet in) at the present entry rate of all doors.
  Honest but naive: early in the evening most patrons have not set out yet, so it runs late; it
  is the forecast to trust in the half hour before the curtain, when the foyer is at its busiest.
- `profile`: once the house has past performances in its log, their arrival profile (the share
  of a night's arrivals in by each minute before and after its curtain, averaged over the last
  MAX_NIGHTS nights) and their no-show rate (1 - came / sold, where the sold figure is known).
  Tonight's expected patrons are the sold ones less the usual no-shows; those still to come
  are taken to arrive in the past nights' shape from where tonight stands. "All in" is when that
  shape reaches FINISH of the rest: the last few stragglers of any night would otherwise put it
  at the interval.

Both say how many patrons will still be outside at the curtain and whether the forecast runs
past it, and by how much; the profile also says how many the past nights usually had coming in
late (the curtain-at-risk alert looks at tonight's excess over that: gate/house/watch.py).
"""

from __future__ import annotations

from typing import Optional

FROM_MIN, TO_MIN = -180, 60   # a profile covers 3 h before the curtain to 1 h after; arrivals outside count at its ends
MIN_NIGHT = 30                # admissions a past night needs to lend its shape
MAX_NIGHTS = 10               # the most recent nights averaged
FINISH = 0.98                 # "all in": the share of the rest the profile must reach
MINUTE = 60_000


def profile(minutes: dict[int, int], curtain_ms: int) -> Optional[list[float]]:
    """The share of one night's admissions in by each minute boundary FROM_MIN..TO_MIN + 1 from its
    curtain (`minutes`: unix minute -> admissions; a minute's admissions are in by its end); None
    for a night too small to lend its shape."""
    counts = [0] * (TO_MIN - FROM_MIN + 1)
    total = 0
    curtain_min = curtain_ms // MINUTE
    for m, n in minutes.items():
        if n > 0:
            counts[min(TO_MIN, max(FROM_MIN, m - curtain_min)) - FROM_MIN] += n
            total += n
    if total < MIN_NIGHT:
        return None
    out, cum = [0.0], 0
    for c in counts:
        cum += c
        out.append(cum / total)
    return out


def mean(profiles: list[list[float]]) -> Optional[list[float]]:
    """The average shape of several nights (None for none)."""
    if not profiles:
        return None
    return [sum(col) / len(profiles) for col in zip(*profiles)]


def share_at(prof: list[float], tau_min: float) -> float:
    """The profile's share at `tau_min` minutes from the curtain (interpolated, clamped to its ends)."""
    x = min(float(TO_MIN), max(float(FROM_MIN), tau_min)) - FROM_MIN
    i = int(x)
    if i >= len(prof) - 1:
        return prof[-1]
    return prof[i] + (prof[i + 1] - prof[i]) * (x - i)


def minute_reaching(prof: list[float], share: float) -> float:
    """The first minute (from the curtain) at which the profile reaches `share`."""
    for i, s in enumerate(prof):
        if s >= share:
            if i == 0:
                return float(FROM_MIN)
            before = prof[i - 1]
            return FROM_MIN + i - 1 + (share - before) / (s - before) if s > before else float(FROM_MIN + i)
    return float(TO_MIN)


def _versus_curtain(out: dict, curtain: Optional[int]) -> dict:
    at = out["forecast"]
    if curtain is None or at is None:
        out.update(past_curtain=None, past_curtain_min=None)
    else:
        out.update(past_curtain=at > curtain, past_curtain_min=round(max(0, at - curtain) / MINUTE, 1))
    return out


def by_rate(now: int, still: Optional[int], rate: float, curtain: Optional[int], last_in: Optional[int]) -> dict:
    """All still expected in at `rate` entries a minute."""
    out: dict = {"method": "rate", "expected": None, "usual_late": 0}
    if still is None:
        out.update(method=None, forecast=None, outside_at_curtain=None, why="no ticket list: nobody is known to be expected")
    elif still == 0:
        out.update(forecast=last_in or now, outside_at_curtain=0)
    elif rate <= 0:   # never, at this rate: past any curtain, with everyone still expected outside
        out.update(forecast=None, outside_at_curtain=still if curtain is not None else None,
                   why="nobody is coming in: no rate to forecast from")
        out.update(past_curtain=True if curtain is not None else None, past_curtain_min=None)
        return out
    else:
        out["forecast"] = int(now + still / rate * MINUTE)
        if curtain is not None:
            out["outside_at_curtain"] = max(0, round(still - rate * max(0, curtain - now) / MINUTE))
        else:
            out["outside_at_curtain"] = None
    return _versus_curtain(out, curtain)


def by_profile(now: int, sold: int, came: int, curtain: int, prof: list[float], no_show: Optional[float],
               rate: float, last_in: Optional[int]) -> dict:
    """All expected in as past nights arrived (see the module's docstring); falls back to the rate
    once tonight is past the profile's end."""
    expected = round(sold * (1 - (no_show or 0.0)))
    still = max(0, expected - came)
    tau = (now - curtain) / MINUTE
    f_now = share_at(prof, tau)
    usual_late = round(expected * (1 - share_at(prof, 0)))
    if still == 0:
        out = {"method": "profile", "forecast": last_in or now, "outside_at_curtain": 0}
    elif tau >= TO_MIN or f_now >= 0.999:
        out = by_rate(now, still, rate, curtain, last_in)
        out["why"] = "past the end of the past nights' arrivals: the rate decides"
    else:
        rest = 1 - f_now
        done = minute_reaching(prof, f_now + FINISH * rest)
        out = {"method": "profile", "forecast": int(curtain + max(done, tau) * MINUTE)}
        out["outside_at_curtain"] = round(still * (1 - share_at(prof, 0)) / rest) if tau < 0 else still
    out.update(expected=expected, usual_late=usual_late, coming=still)
    return _versus_curtain(out, curtain)
