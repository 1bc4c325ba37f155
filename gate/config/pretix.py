"""Config checks of the [pretix] section: keys that load now, slugs, and what the house needs to sync."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_pretix(cfg, fail) -> None:
    """pretix keys must load now, not when `gate scan` first meets a pretix ticket."""
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
    if cfg.gate is not None and cfg.gate.id == "pretix":
        fail("gate.id", "'pretix' is the house's name for check-ins made in pretix: choose another")
    if p.event and not SLUG_RE.match(p.event):
        fail("pretix.event", "not a pretix event slug")
    if not p.url:
        return
    if cfg.house is None:
        fail("pretix.url", "only the house talks to pretix; gates keep [pretix] public_keys and maps")
    check_url_and_token(p, fail)   # pretix-safe
    if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", p.url):
        fail("pretix.url", "must be an http:// or https:// URL")
    for key in ("organizer", "event"):
        if not SLUG_RE.match(getattr(p, key)):
            fail(f"pretix.{key}", "required with pretix.url: the slug as in pretix's URLs")
    if not os.environ.get("GATE_PRETIX_TOKEN"):
        if not p.token_file:
            fail("pretix.token_file", "required with pretix.url (or the environment variable GATE_PRETIX_TOKEN)")
        from gate.config.checks import secret_file_problem
        problem = secret_file_problem(p.token_file)
        if problem:
            fail("pretix.token_file", problem)
    if p.checkin_list <= 0:
        fail("pretix.checkin_list", "required with pretix.url: the id of the doors' check-in list")
    if not cfg.signing.list_signing_key or not cfg.signing.venue_secret:
        fail("pretix.url", "the house passes pretix's tickets on as a signed ticket list: set [signing] "
                           "list_signing_key and venue_secret")
    if p.sync_every_s < 1:
        fail("pretix.sync_every_s", "at least 1 second")
    if not 0 < p.timeout_s <= 300:
        fail("pretix.timeout_s", "between 0 and 300 seconds")


HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*\.?$")


def check_url_and_token(p, fail) -> None:
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
