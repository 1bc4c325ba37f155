"""Hospitality at the door: ticket tags that ask for attention.

Config maps a tag (member, donor, first_visit, birthday, wheelchair, ...) to an
attention level and a greeting. The highest level among a patron's tags picks
the feedback pattern; the greeting is for the usher's display.
"""

from __future__ import annotations

from gate.core.events import Ticket

LEVELS = ("notice", "greet", "assist")


def first_name(holder: str) -> str:
    return holder.split()[0] if holder.strip() else ""


def attention(ticket: Ticket, rules: dict) -> tuple[tuple[str, ...], str, str]:
    """(tags that asked for attention, highest level, greeting) for a ticket."""
    if ticket is None:
        return (), "", ""
    tags = tuple(t for t in ticket.tags if t in rules)
    if not tags:
        return (), "", ""
    top = max(tags, key=lambda t: LEVELS.index(rules[t].level))
    greetings = []
    for t in tags:
        g = rules[t].greeting
        if g:
            greetings.append(g.format(holder=ticket.holder, first=first_name(ticket.holder), seat=ticket.seat))
    return tags, rules[top].level, " ".join(greetings)
