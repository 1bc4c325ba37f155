"""[hospitality]: ticket tags that ask the usher's attention (notice, greet, assist) and their greetings.

A tag travels in every scan event, so its name is checked with the bus's rule (gate/bus/values.py)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from gate.bus import values
from gate.config.rules import Fail, check_choices, choice

GREETING_FIELDS = ("holder", "first", "seat")


@dataclass
class TagRule:
    level: str = choice("notice", "greet", "assist")
    greeting: str = ""               # {holder}, {first} and {seat} are filled in


@dataclass
class HospitalitySection:
    tags: dict[str, TagRule] = field(default_factory=dict)


def check_greeting(fail: Fail, dotted: str, template: str) -> None:
    """A greeting is filled with str.format: every field must be one we fill in."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        fail(dotted, f"{exc} (write {{{{ and }}}} for literal braces)")
    for _, name, _, _ in fields:
        if name is not None and name not in GREETING_FIELDS:
            fail(dotted, f"unknown placeholder {{{name}}} (known: "
                         + ", ".join("{" + f + "}" for f in GREETING_FIELDS) + ")")
    try:  # a format spec or conversion can still fail on a real name
        template.format(**{f: "Ada Lovelace" for f in GREETING_FIELDS})
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        fail(dotted, f"cannot be filled in: {exc}")


def check(cfg, fail: Fail) -> None:
    """Levels everywhere; on a gate, tags that travel in a scan event and greetings that fill in."""
    tags = cfg.hospitality.tags
    for tag, rule in tags.items():
        check_choices(rule, f"hospitality.tags.{tag}", fail)
    if cfg.gate is None:
        return
    if len(tags) > values.MAX_ATTENTION:
        fail("hospitality.tags", f"at most {values.MAX_ATTENTION} tags ask for attention (a scan event carries no more)")
    for tag, rule in tags.items():
        if not values.TAG_RE.fullmatch(tag):
            fail(f"hospitality.tags.{tag}", "a tag is 1-32 letters, digits, '_', '-' or '.' (it travels in every "
                 "scan event; the house and the other gates refuse anything else)")
        check_greeting(fail, f"hospitality.tags.{tag}.greeting", rule.greeting)
