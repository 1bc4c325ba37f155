"""Did it take effect? What the box office waits to see after the broker accepted its message.

Every party says on its retained status topic what it runs (gate/link.py, gate/house/service.py):

    gate/<venue>/<gate>/status   {"state", "mode", "venue_mode", "venue_issued", "ticket_list", ...}
    gate/<venue>/house/status    {"state", "venue_mode", "venue_issued", ...}

`venue_issued` is the signed time of the venue control message the party applied, so `gate venue`
knows its *own* message took effect (not an older one that happened to say the same); a gate's
`ticket_list` is the signed list it runs ("series/seq"), so `--publish` knows its list was applied.
A broker never tells a publisher who received a message: the parties' own word is the only proof.

Who must answer: the house (for `gate venue`) and every gate on the roster: the broker's roster.json
(`[boxoffice] roster`), or, without one, every gate that has a status on the broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from gate.bus import topics, values
from gate.bus.messages import unpack_status
from gate.core.errors import PayloadError

HOUSE = "house"


@dataclass(frozen=True)
class Answer:
    """One party's answer: whether it confirmed, what its status shows, and (a miss) what to check."""
    party: str
    ok: bool
    shows: str
    why: str = ""


Judge = Callable[[str, Optional[dict]], Answer]


def statuses(latest: dict[str, bytes], venue: str) -> dict[str, Optional[dict]]:
    """Each party's status from the newest message on its status topic (None: malformed)."""
    out: dict[str, Optional[dict]] = {}
    prefix = f"{topics.ROOT}/{venue}/"
    for topic, payload in latest.items():
        party = topics.gate_of(topic)
        if not topic.startswith(prefix) or not topic.endswith("/status") or not values.is_id(party):
            continue
        try:
            out[party] = unpack_status(payload) if payload else None   # an empty retained message: removed
        except PayloadError:
            out[party] = None
    return out


def gates_heard(latest: dict[str, bytes], venue: str) -> list[str]:
    """The gates with a status on the broker (the roster when the box office has no roster file)."""
    return sorted(p for p, st in statuses(latest, venue).items() if p != HOUSE and st is not None)


def _absent(party: str, st: Optional[dict], later: str) -> Optional[Answer]:
    """The answer for a party that cannot have confirmed: never heard of, or offline."""
    service = "gate-house" if party == HOUSE else "gate-scan"
    if st is None:
        return Answer(party, False, "-", "no readable status on the broker: never connected? check that it is "
                                         f"installed, running ({service}) and configured for this broker ([mqtt])")
    if st["state"] != "online":
        return Answer(party, False, "offline", f"offline: {later}; check that it is powered, running ({service}) "
                                               "and on the network")
    return None


def venue_judge(mode: str, issued: int) -> Judge:
    """Confirmed: the party applied our control message (or a newer one to the same mode), and for a
    gate going live, its own mode is not rehearsal (a `test` staff card) either: its next scans are live."""
    def judge(party: str, st: Optional[dict]) -> Answer:
        absent = _absent(party, st, "it switches when it reconnects (the message is retained)")
        if absent is not None or st is None:
            return absent or Answer(party, False, "-")
        service = "gate-house" if party == HOUSE else "gate-scan"
        got, when = st["venue_mode"], st["venue_issued"]
        if when is None or not got:
            return Answer(party, False, "?", "its status says nothing of venue control messages: update its gate "
                                             "software to the box office's version")
        if when < issued:
            return Answer(party, False, got, f"online, but it did not apply this message: see `journalctl -u "
                                             f"{service}` for 'venue control message'; its [signing] staff_keys "
                                             "must hold the public key of the staff key used here")
        if got != mode:
            return Answer(party, False, got, f"a newer switch (to {got}) was applied after this one")
        if party != HOUSE and mode == "live" and st["mode"] == "test":
            return Answer(party, False, "live, own mode test",
                          "its own mode is rehearsal (a `test` staff card): its scans stay rehearsal until an "
                          "entry or exit staff card is scanned there")
        own = f" ({st['mode']})" if party != HOUSE and st["mode"] in ("exit", "info") else ""
        return Answer(party, True, got + own)
    return judge


def list_judge(series: str, seq: int) -> Judge:
    """Confirmed: the gate runs this list (or a later one of the same series)."""
    def judge(party: str, st: Optional[dict]) -> Answer:
        absent = _absent(party, st, "it takes the list when it reconnects (the list is retained)")
        if absent is not None or st is None:
            return absent or Answer(party, False, "-")
        runs = st["ticket_list"]
        s, _, n = runs.partition("/")
        if s == series and int(n) >= seq:
            return Answer(party, True, f"list {runs}")
        if not runs:
            return Answer(party, False, "no list", "it reports no signed list: it refused this one, or its software "
                          "predates the box office's; see its health on the dashboard (ticket lists refused)")
        return Answer(party, False, f"list {runs}",
                      "it did not apply this list: see `journalctl -u gate-scan` for 'ignoring a ticket list'; a "
                      "gate needs the box office's .pub in [signing] list_keys and the same venue_secret")
    return judge


def await_answers(bus, venue: str, parties: Callable[[dict], list[str]], judge: Judge,
                  wait_s: float) -> list[Answer]:
    """Wait (at most wait_s) until every party confirms; the answers as they stand at the end.

    `bus` is an open gate.bus.publisher.BusSession subscribed to the venue's status topics;
    `parties(latest)` says who must answer (it may learn them from what the broker holds)."""
    end = time.monotonic() + wait_s
    while True:
        seen = bus.received      # read before the snapshot: a message in between ends the wait at once
        latest = bus.snapshot()
        st = statuses(latest, venue)
        answers = [judge(p, st.get(p)) for p in parties(latest)]
        left = end - time.monotonic()
        if all(a.ok for a in answers) or left <= 0:
            return answers
        bus.wait_change(seen, left)


def table(answers: list[Answer]) -> list[str]:
    """One line per party: who, what its status shows, confirmed or what to check."""
    width = max([len(a.party) for a in answers] + [5])
    shows = max([len(a.shows) for a in answers] + [4])
    return [f"  {a.party:<{width}}  {a.shows:<{shows}}  {'confirmed' if a.ok else 'NOT CONFIRMED: ' + a.why}"
            for a in answers]
