"""[boxoffice]: the box office as a party of its own (docs/contract.md, "Three parties, three identities").

The box office publishes ticket lists and venue control messages and makes keys and staff cards
(`gate tickets import --publish`, `gate venue live|test`, `gate staff issue`, `gate keys new`). It
has its own config file (config/boxoffice.toml), its own broker user (`boxoffice`, made by
`gate broker config`) and its own keys: it never connects as the house or a gate. With the
broker's `use_username_as_clientid`, a tool logged in as the house *is* the house to the broker:
it pushes the running house off and, connecting with a clean session, wipes the scans queued for
it. So a box-office config names only the box office's broker user.

    [boxoffice]
    venue = "hall"
    roster = "/etc/mosquitto/gate/roster.json"   # the gates a command waits for ("" = those with a status)
    wait_s = 20                                   # how long a command waits for every party to confirm
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from gate.config.rules import Fail, check_ranges, check_venue, ranged
from gate.core import ids

USER = ids.BOXOFFICE        # the box office's broker user (`gate broker config` makes it)


@dataclass
class BoxOfficeSection:
    venue: str = ""
    roster: str = ""         # the broker's roster.json (`gate broker config --out DIR`): the gates to hear from
    wait_s: float = ranged(20.0, 1, 600, " s")   # `gate venue` and `--publish` wait this long for confirmations


def check(cfg, fail: Fail) -> None:
    """The venue, the roster file, the wait and the broker user (its own). Its key files are
    [signing]'s (gate/config/signing.py: staff_key, list_signing_key, venue_secret)."""
    b = cfg.boxoffice
    if b is None:
        return
    if cfg.gate is not None or cfg.house is not None:
        fail("boxoffice", "the box office is a party of its own: its own config file (config/boxoffice.toml), "
                          "without [gate] or [house]")
    check_venue(fail, "boxoffice.venue", b.venue)
    check_ranges(b, "boxoffice", fail)
    if b.roster:
        from gate.bus.brokerconf import BrokerConfigError, read_roster
        try:
            read_roster(b.roster, b.venue)
        except FileNotFoundError:
            fail("boxoffice.roster", f"{b.roster} does not exist (gate broker config writes roster.json in its --out "
                                     "directory); \"\" takes the gates with a status on the broker instead")
        except PermissionError:
            fail("boxoffice.roster", f"{b.roster} is not readable by this user")
        except (OSError, BrokerConfigError) as exc:
            fail("boxoffice.roster", str(exc))
    if cfg.mqtt.username and cfg.mqtt.username != USER:
        fail("mqtt.username", f"{cfg.mqtt.username!r}: the box office connects as its own broker user {USER!r} "
                              f"(gate broker config made users/{USER}.password); as any other party's user it "
                              "would push that party off the broker and wipe what is queued for it")


def party_of(path) -> str:
    """Whose config a file is, from its sections alone ("boxoffice", "house", "gate"), or "" when it
    cannot tell (unreadable, not TOML, none of them): read before anything else is checked, so the
    wrong party's config is named as such rather than failing on one of its key files."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    for party in ("boxoffice", "house", "gate"):
        if isinstance(raw.get(party), dict):
            return party
    return ""


def key_paths(path) -> dict[str, str]:
    """The key files a box-office config names in [signing] (for `gate keys new -c`, which makes
    them: the config cannot be fully loaded while they do not exist yet)."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    s = raw.get("signing")
    if not isinstance(s, dict):
        return {}
    return {k: s[k] for k in ("list_signing_key", "staff_key", "venue_secret") if isinstance(s.get(k), str) and s[k]}
