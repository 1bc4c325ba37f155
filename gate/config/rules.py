"""The rules a field carries on itself (choices, ranges, GPIO pins) and the helpers sections share.

A section declares a key's rule where the key is declared, as field metadata:

    fps: int = ranged(30, 1, 120)
    display: str = choice("none", "console")
    relay: Optional[int] = pin()

The loader checks every section's choices; a section's own `check` applies its ranges (a gate's
camera ranges mean nothing in a house's config) and the rules that span several keys. Every rule
calls `fail(dotted_key, problem)`, which raises a ConfigError naming the key and its line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import Callable, NoReturn

from gate.core import ids

Fail = Callable[[str, str], NoReturn]

HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
BCM_PINS = range(0, 28)          # the GPIO numbers on the Pi's 40-pin header (every model)


def choice(*options: str):
    """A text key that must be one of `options`; the first is the default."""
    return dataclasses.field(default=options[0], metadata={"choices": options})


def ranged(default, low=None, high=None, what: str = ""):
    """A number between `low` and `high` (None = unbounded; a field name = that field's value).
    `what` is said after the bounds: a unit, or what 0 means. A table of numbers (default `dict`)
    has the range on each value."""
    if isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata={"range": (low, high, what)})
    return dataclasses.field(default=default, metadata={"range": (low, high, what)})


def pin():
    """An optional BCM GPIO number; None = not fitted."""
    return dataclasses.field(default=None, metadata={"pin": True})


def check_choices(obj, prefix: str, fail: Fail) -> None:
    """Every `choice()` field of the section holds one of its options."""
    for f in dataclasses.fields(obj):
        allowed = f.metadata.get("choices")
        if allowed and getattr(obj, f.name) not in allowed:
            fail(f"{prefix}.{f.name}", f"must be one of {', '.join(allowed)}")


def check_ranges(obj, prefix: str, fail: Fail) -> None:
    """Every `ranged()` field of the section lies within its bounds."""
    for f in dataclasses.fields(obj):
        if "range" in f.metadata:
            low, high, what = f.metadata["range"]
            low = getattr(obj, low) if isinstance(low, str) else low
            high = getattr(obj, high) if isinstance(high, str) else high
            value = getattr(obj, f.name)
            for key, v in (value.items() if isinstance(value, dict) else [("", value)]):
                check_range(fail, f"{prefix}.{f.name}" + (f".{key}" if key else ""), v, low, high, what)


def check_range(fail: Fail, dotted: str, value, low=None, high=None, what: str = "") -> None:
    """`value` (None = not set) between `low` and `high`, or a message saying the bounds."""
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            fail(dotted, f"must be at least {low:g}{what}, got {value:g}")
        elif low is None:
            fail(dotted, f"must be at most {high:g}{what}, got {value:g}")
        fail(dotted, f"must be between {low:g} and {high:g}{what}, got {value:g}")


def check_pins(fail: Fail, sections) -> None:
    """Every pin field of the (prefix, section) pairs is a header GPIO, and used once."""
    seen: dict[int, str] = {}
    for prefix, obj in sections:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not f.metadata.get("pin") or value is None:
                continue
            key = f"{prefix}.{f.name}"
            if value not in BCM_PINS:
                fail(key, f"GPIO {value} does not exist: BCM numbers 0-27 (not header positions)")
            if value in seen:
                fail(key, f"GPIO {value} is already used by {seen[value]}")
            seen[value] = key


def check_venue(fail: Fail, dotted: str, venue: str) -> None:
    """A venue id as the bus accepts it (gate/core/ids.py)."""
    problem = ids.id_problem(venue)
    if problem:
        fail(dotted, problem)


def check_events(fail: Fail, dotted: str, events) -> None:
    """Configured event ids: each one a topic level no house topic uses (gate/<venue>/house/<event>)."""
    for ev in events:
        problem = ids.event_problem(ev)
        if problem:
            fail(dotted, problem)


def check_time_of_day(fail: Fail, dotted: str, value: str) -> None:
    """A time of day ("HH:MM") or empty, as gate/core/timeofday.py reads it."""
    from gate.core.timeofday import parse_time_of_day
    try:
        parse_time_of_day(value)
    except ValueError as exc:
        fail(dotted, str(exc))


def secret_file_problem(path: str) -> str:
    """Why a secret file cannot be used ('' when it can)."""
    if os.path.isdir(path):
        return f"{path} is a directory, not a file"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(65537)
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return f"{path} is not readable by this user"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    if not text.strip():
        return f"{path} is empty (or only whitespace)"
    if len(text) > 65536:
        return f"{path} is over 64 KiB: not a secret"
    return ""


def is_host(text: str) -> bool:
    """An IP address or a DNS host name."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return HOST_RE.match(text) is not None
