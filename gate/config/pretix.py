"""[pretix]: a gate's pretix keys and id maps; the house's one link to pretix (URL, slugs, token, sync).

Keys must load now, not when `gate scan` first meets a pretix ticket. The gate events the maps name,
and the event slug (a single event's gate event), are event ids on the bus (gate/core/ids.py)."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass, field

from gate.config.rules import Fail, check_events, check_ranges, ranged, secret_file_problem

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class PretixSection:
    # a gate: pretix_sig1 keys (files; base64 of PEM as pretix shows them, or PEM). The house's
    # ticket list brings the event's keys too; these are for gates that never hear from a house.
    public_keys: list[str] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)     # item id -> gate event
    subevents: dict[str, str] = field(default_factory=dict)  # subevent id -> gate event
    zones: dict[str, str] = field(default_factory=dict)      # item id -> zone
    event: str = ""                  # the event slug (gate events are <slug> or <slug>-<subevent id>)
    # the house: its one link to pretix
    url: str = ""                    # e.g. https://pretix.example.org
    organizer: str = ""
    checkin_list: int = 0
    token_file: str = ""             # a pretix API or device token; or GATE_PRETIX_TOKEN
    sync_every_s: float = ranged(60.0, 1, None, " s")   # down-sync interval (also on start and on demand)
    timeout_s: float = ranged(15.0, 0.1, 300, " s")     # per HTTP request


def check(cfg, fail: Fail) -> None:
    """Keys that load; maps of pretix ids to event ids; on the house, everything its pretix link needs."""
    from gate.boxoffice.pretix import load_pretix_key_file
    p = cfg.pretix
    for path in p.public_keys:
        try:
            load_pretix_key_file(path)
        except OSError as exc:
            fail("pretix.public_keys", f"cannot read {path}: {exc.strerror}")
        except ValueError as exc:
            fail("pretix.public_keys", f"not a pretix_sig1 public key: {exc}")
    for name, mapping in (("items", p.items), ("subevents", p.subevents), ("zones", p.zones)):
        for k in mapping:
            if not k.isdigit():
                fail(f"pretix.{name}.{k}", "keys are pretix ids (digits)")
    for name, mapping in (("items", p.items), ("subevents", p.subevents)):
        for k, ev in mapping.items():
            if ev:   # empty = not mapped: the ticket keeps its event slug
                check_events(fail, f"pretix.{name}.{k}", [ev])
    if p.event and not SLUG_RE.match(p.event):
        fail("pretix.event", "not a pretix event slug")
    if p.event:   # a single event's tickets belong to the gate event <slug>
        check_events(fail, "pretix.event", [p.event])
    if not p.url:
        return
    if cfg.house is None:
        fail("pretix.url", "only the house talks to pretix; gates keep [pretix] public_keys and maps")
    check_url_and_token(p, fail)   # pretix-safe: scheme, host, port, the token's characters
    if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", p.url):
        fail("pretix.url", "must be an http:// or https:// URL")
    for key in ("organizer", "event"):
        if not SLUG_RE.match(getattr(p, key)):
            fail(f"pretix.{key}", "required with pretix.url: the slug as in pretix's URLs")
    if not os.environ.get("GATE_PRETIX_TOKEN"):
        if not p.token_file:
            fail("pretix.token_file", "required with pretix.url (or the environment variable GATE_PRETIX_TOKEN)")
        problem = secret_file_problem(p.token_file)
        if problem:
            fail("pretix.token_file", problem)
    if p.checkin_list <= 0:
        fail("pretix.checkin_list", "required with pretix.url: the id of the doors' check-in list")
    if not cfg.signing.list_signing_key or not cfg.signing.venue_secret:
        fail("pretix.url", "the house passes pretix's tickets on as a signed ticket list: set [signing] "
                           "list_signing_key and venue_secret")
    check_ranges(p, "pretix", fail)   # the link's timings mean nothing on a gate


HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*\.?$")


def check_url_and_token(p, fail: Fail) -> None:
    """The URL's scheme, host and port, and the token's characters: caught here, not at the first sync
    as a misleading "cannot reach pretix"."""
    from gate.boxoffice.pretix_api import token_problem
    u = urllib.parse.urlsplit(p.url)
    if u.scheme not in ("http", "https"):
        fail("pretix.url", f"scheme {u.scheme or '(none)'!r}: must be https:// (or http:// on a private network)")
        return
    if "@" in u.netloc:
        fail("pretix.url", "no user or password in the URL: the house authenticates with pretix.token_file")
    host = u.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_RE.match(host) or host.replace(".", "").isdigit():
            fail("pretix.url", f"{host!r} is not a host name or an IP address")
    try:
        port = u.port
    except ValueError:
        fail("pretix.url", "the port must be a number from 1 to 65535")
    else:
        if port == 0:
            fail("pretix.url", "the port must be a number from 1 to 65535")
    if u.query or u.fragment:
        fail("pretix.url", "no ?query or #fragment: the base address of pretix only")
    token = os.environ.get("GATE_PRETIX_TOKEN")
    if token is None and p.token_file:
        try:
            with open(p.token_file, encoding="utf-8", errors="replace") as f:
                token = f.read(4096)
        except OSError:
            return   # secret_file_problem says why
    if token is not None:
        problem = token_problem(token)
        if problem:
            fail("pretix.token_file" if "GATE_PRETIX_TOKEN" not in os.environ else "GATE_PRETIX_TOKEN", problem)
