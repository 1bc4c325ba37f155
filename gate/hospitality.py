"""Hospitality at the door: ticket tags that ask for attention.

Config maps a tag (member, donor, first_visit, birthday, wheelchair, ...) to an
attention level and a greeting. The highest level among a patron's tags picks
the feedback pattern; the greeting is for the usher's display. A tag in the
turnstile's `assist_tags` asks for a longer release. All of it is a `Welcome`
that travels beside the verdict; the rules (gate/decide.py) never see it.
"""

from __future__ import annotations

from typing import Optional

from gate.core.events import NO_WELCOME, Ticket, Welcome

LEVELS = ("notice", "greet", "assist")


def first_name(holder: str) -> str:
    return holder.split()[0] if holder.strip() else ""


def welcome(ticket: Optional[Ticket], rules: dict, assist_tags=frozenset()) -> Welcome:
    """What a ticket's tags ask of the door: attention tags, highest level, greeting, assist."""
    if ticket is None:
        return NO_WELCOME
    assist = not frozenset(assist_tags).isdisjoint(ticket.tags)
    tags = tuple(t for t in ticket.tags if t in rules)
    if not tags:
        return Welcome(assist=assist)
    top = max(tags, key=lambda t: LEVELS.index(rules[t].level))
    greetings = []
    for t in tags:
        g = rules[t].greeting
        if g:
            greetings.append(g.format(holder=ticket.holder, first=first_name(ticket.holder), seat=ticket.seat))
    return Welcome(tags, rules[top].level, " ".join(greetings), assist)
