"""Which of the venue's houses publishes: an election on one retained topic, decided by every house alike.

A venue may run a second house (`[house] standby = true`) beside the first. Both keep their own complete
attendance log and count; only the *active* one publishes (counts, status, alerts, Home Assistant, resend
requests, ticket lists, pretix). Each house that takes the job says so with a retained claim on
`gate/<venue>/house/active`: `{"house", "instance", "term", "first", "ts"}`. Claims are ordered by
(term, first house before standby, house id, instance): a total order, so two houses that have seen the
same claims agree on the winner without talking to each other.

The rules, all in `Election.tick`:
- A house publishes only while `active`: its claim is the highest it has seen, SETTLE_S have passed since it
  made it without a higher one turning up, and since its last (re)connect it has read back what the broker
  retains (RETAINED_S after the subscription is acknowledged), its own claim still the highest.
- The first house claims at start when nobody holds the job: no claim on the broker, or the holder's status
  is `offline` (its last will, or a clean stop), or the holder has not been heard for STALE_S.
- A standby house claims on the same signs of a dead holder, never on start while the holder lives: the
  will on `gate/<venue>/house/status` is what hands it the job, in about two seconds.
- The active house repeats its claim every HEARTBEAT_S, so a holder that died without a will (a broker
  restarted under it) is noticed after STALE_S.
- A house that sees a higher claim stops publishing at once. The first house returning while the standby
  holds a newer term stays standby: no fail-back (each change costs seconds of availability); the operator
  hands the job back by restarting the standby house, whose clean stop says `offline`.
- The active house answers a lower claim by repeating its own (the retained claim stays the winner's), and an
  `offline` status it did not send (a dead house's will: a first house connects with its will from the start,
  gate/house/build.py) by saying `online` again.

Pure: the caller passes the time (`time.monotonic()`), hands in what the broker delivered, and carries
out the actions `tick` returns (gate/house/standby.py). Not thread-safe by itself.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional

from gate.core import ids

STARTING, STANDBY, CLAIMING, ACTIVE = "starting", "standby", "claiming", "active"
SETTLE_S = 1.0       # a claim stands this long unchallenged before its house publishes (claims cross in ms)
RETAINED_S = 0.3     # after the subscription is acknowledged, what the broker retains has arrived
HEARTBEAT_S = 5.0    # the active house repeats its claim this often
STALE_S = 20.0       # a holder not heard for this long (no claim repeated, no `online`) is taken for dead
MAX_CLAIM = 1024     # bytes: a claim is a short JSON object; anything longer is not one
MAX_TERM = 2 ** 53 - 1

# What `tick` asks the caller to do.
CLAIM = "claim"                # publish `mine` (retained)
RECONNECT_WITH_WILL = "will"   # won, but connected without the last will on the house status: connect again with it
ACTIVATE = "activate"          # publish: say online, counts afresh, discovery, pretix
YIELD = "yield"                # stop publishing; connect again without the will
SAY_ONLINE = "online"          # an `offline` the active house did not send


@dataclass(frozen=True, order=True)
class Claim:
    term: int
    first: bool                                   # a first house wins a tie of terms against a standby
    house: str                                    # who, for people: the broker user or client id
    instance: str                                 # which process: a restarted house is a new one
    ts: int = field(default=0, compare=False)     # wall time, ms, when (re)published: for people only

    def payload(self) -> bytes:
        return json.dumps({"house": self.house, "instance": self.instance, "term": self.term,
                           "first": self.first, "ts": self.ts}).encode()


def _small_json(payload: bytes) -> object:
    """The JSON value of a claim or a status as it came from the bus; None when empty, too long or not JSON."""
    if not payload or len(payload) > MAX_CLAIM:
        return None
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_claim(payload: bytes) -> Optional[Claim]:
    """A claim from the bus, validated by value; None for anything else (an empty retained message too)."""
    d = _small_json(payload)
    if not isinstance(d, dict):
        return None
    house, instance, term, first, ts = d.get("house"), d.get("instance"), d.get("term"), d.get("first"), d.get("ts", 0)
    if not (ids.is_id(house) and ids.is_id(instance) and type(term) is int and 1 <= term <= MAX_TERM
            and type(first) is bool and type(ts) is int and 0 <= ts <= MAX_TERM):
        return None
    return Claim(term, first, house, instance, ts)


def parse_status(payload: bytes) -> Optional[str]:
    """`online` or `offline` from a house status message; None for anything else."""
    d = _small_json(payload)
    state = d.get("state") if isinstance(d, dict) else None
    return state if state in ("online", "offline") else None


class Election:
    """One house's view of the election. `first`: this house is not configured as a standby."""

    def __init__(self, house: str, first: bool, *, settle_s: float = SETTLE_S, retained_s: float = RETAINED_S,
                 heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S):
        self.house, self.first = house, first
        self.instance = secrets.token_hex(6)
        self.settle_s, self.retained_s, self.heartbeat_s, self.stale_s = settle_s, retained_s, heartbeat_s, stale_s
        self.role = STARTING
        self.best: Optional[Claim] = None      # the highest claim seen (kept across reconnects: terms never go back)
        self.mine: Optional[Claim] = None      # this house's claim, once made
        self.status: Optional[str] = None      # the house status as last heard on this connection
        self.heard_at = 0.0                    # when the holder of `best` last showed it lives
        self.best_at = 0.0                     # when `best` was made or arrived live (0: read back retained)
        self.offline_at = -1.0                 # when the status last said `offline`
        self.ready_at: Optional[float] = None  # when the retained messages are in (None: not subscribed)
        self.claimed_at = 0.0
        self.beat_at = 0.0
        self.since = int(time.time() * 1000)   # when the role last changed (wall time, for people)
        self.lower_seen = False                # a lower claim arrived while active: repeat ours
        self.offline_seen = False              # an `offline` arrived while active: say online

    # -- what the broker delivered -------------------------------------------------------
    def connected(self) -> None:
        """(Re)connected: publish nothing until the retained claim and status are read again."""
        self._set_role(STARTING)
        self.status = None
        self.ready_at = None

    def subscribed(self, now: float) -> None:
        """The subscription to the house topics is acknowledged: the retained ones follow at once."""
        self.ready_at = now + self.retained_s
        self.heard_at = now   # the holder gets STALE_S from here to show it lives

    def heard_claim(self, claim: Claim, live: bool, now: float) -> None:
        """A claim on the active topic; `live`: published just now (not the retained copy on subscribing)."""
        if self.best is None or claim > self.best:
            self.best = claim
            self.heard_at = now
            # A claim made after the last `offline` is a house taking over, not the one that died; a retained
            # one read back on subscribing is as old as the retained status beside it.
            self.best_at = now if live else 0.0
        elif claim == self.best and live:
            self.heard_at = now   # the holder's heartbeat
        if self.role == ACTIVE and self.mine is not None and claim < self.mine:
            self.lower_seen = True

    def claim_lost(self) -> None:
        """The retained claim was cleared or overwritten with something that is no claim."""
        if self.role == ACTIVE:
            self.lower_seen = True

    def heard_status(self, state: str, live: bool, now: float) -> None:
        """The house status (`online` or `offline`), as published by whichever house is active."""
        self.status = state
        if state == "online" and live:
            self.heard_at = now
        if state == "offline":
            self.offline_at = now
        if state == "offline" and self.role == ACTIVE:
            self.offline_seen = True

    # -- deciding -----------------------------------------------------------------------
    def tick(self, now: float, has_will: bool) -> list[str]:
        """What to do now; `has_will`: the connection carries the last will on the house status."""
        if self.ready_at is None or now < self.ready_at:
            return []
        if self.role in (CLAIMING, ACTIVE) and self.best != self.mine:
            self._set_role(STANDBY)   # a higher claim: stop publishing at once
            return [YIELD]
        if self.role == ACTIVE and self.mine is not None:   # (an active house always holds a claim)
            out = []
            if self.lower_seen or now - self.beat_at >= self.heartbeat_s:
                self.lower_seen = False
                self.beat_at = now
                self.mine = self.best = self._claim(self.mine.term)
                out.append(CLAIM)
            if self.offline_seen:
                self.offline_seen = False
                out.append(SAY_ONLINE)
            return out
        if self.mine is not None and self.best == self.mine:   # our claim, not yet settled, or read back after reconnecting
            if now - self.claimed_at < self.settle_s:
                self._set_role(CLAIMING)
                return []
            if not has_will:
                return [RECONNECT_WITH_WILL]
            self._set_role(ACTIVE)
            self.beat_at = now
            self.offline_seen = self.lower_seen = False
            self.mine = self.best = self._claim(self.mine.term)
            return [CLAIM, ACTIVATE]   # the claim again: the broker may have lost the retained one
        if self._holder_gone(now):
            self.mine = self.best = self._claim(min(MAX_TERM, (self.best.term if self.best else 0) + 1))
            self.claimed_at = self.best_at = now
            self._set_role(CLAIMING)
            return [CLAIM]
        if self.role != STANDBY:
            self._set_role(STANDBY)
            return [YIELD] if has_will else []
        return []

    def _claim(self, term: int) -> Claim:
        return Claim(term, self.first, self.house, self.instance, int(time.time() * 1000))

    def _holder_gone(self, now: float) -> bool:
        """Nobody holds the job: the condition for making a claim. An `offline` counts only if it came after
        the claim it would end: the loser of a tie waits for the winner to say `online` (or go stale)."""
        if self.status == "offline" and self.offline_at >= self.best_at:
            return True
        if self.best is None and self.first:
            return True   # the first house on a broker that never had an election
        return now - self.heard_at >= self.stale_s

    def _set_role(self, role: str) -> None:
        if role != self.role:
            self.role = role
            self.since = int(time.time() * 1000)

    # -- for people ------------------------------------------------------------------------
    def view(self) -> dict:
        """For /api/house: this house, its role, and the active house as the claims say."""
        best = self.best
        return {"this": self.house, "instance": self.instance, "standby": not self.first, "role": self.role,
                "since": self.since, "active": best.house if best else None,
                "active_instance": best.instance if best else None, "term": best.term if best else 0}
