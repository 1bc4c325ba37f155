"""[house]: the house-count service: its venue, dashboard address, capacities, MQTT client id, and whether
it is a standby house (gate/house/election.py).

Capacity keys are event ids: each becomes a topic level (gate/<venue>/house/<event>), checked with
the bus's own rule (gate/core/ids.py), so no performance can take the house's status or alerts topic."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from gate.config.rules import (
    HOST_RE,
    Fail,
    check_events,
    check_ranges,
    check_time_of_day,
    check_venue,
    ranged,
    secret_file_problem,
)
from gate.core import ids
from gate.core.timeofday import parse_time_or_moment


@dataclass
class HouseSection:
    venue: str = ""
    listen: str = "127.0.0.1:8080"
    capacity: dict[str, int] = ranged(dict, 1, 1_000_000, " people")   # event id -> people
    token_file: str = ""             # optional dashboard access token
    client_id: str = ""
    checkout: str = ""               # "03:00": everyone still inside is counted as left (same as the gates')
    curtain: dict[str, str] = field(default_factory=dict)   # event id -> "19:30" or "2026-11-23T19:30" (local)
    assist_tags: list[str] = field(default_factory=lambda: ["wheelchair", "access", "attention"])  # alerts: help, not greet
    roster: str = ""                 # the broker's roster.json: a gate gone from it leaves Home Assistant
    forget_gate_after_h: float = ranged(72.0, 0, 24 * 366, " hours (0 = never)")   # silent this long: leaves HA
    standby: bool = False            # a second house: keeps its own log, publishes only once the first is gone


def client_id(cfg) -> str:
    """The house's MQTT client id: fixed, so the broker keeps its session (a standby's default differs)."""
    h = cfg.house
    return h.client_id or (f"house-{h.venue}-standby" if h.standby else f"house-{h.venue}")


def house_id(cfg) -> str:
    """Who this house is on the bus, for people: its broker user (the broker's client id for it), else its client id."""
    return cfg.mqtt.username or client_id(cfg)


def parse_listen(listen: str):
    """(host, port) of a HOST:PORT listen address; raises ValueError saying why not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOST_RE.match(host):
                raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return host, int(port)


def listen_is_private(host: str) -> bool:
    """True when only this machine can reach the address."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(cfg, fail: Fail) -> None:
    """Venue, capacity keys and client id as the bus accepts them; the listen address; the token file;
    a standby house under an identity of its own."""
    h = cfg.house
    if h is None:
        return
    check_venue(fail, "house.venue", h.venue)
    check_time_of_day(fail, "house.checkout", h.checkout)
    try:
        parse_listen(h.listen)
    except ValueError as exc:
        fail("house.listen", f"{h.listen!r}: {exc}")
    for ev in h.capacity:
        check_events(fail, f"house.capacity.{ev}", [ev])
    for ev, text in h.curtain.items():
        check_events(fail, f"house.curtain.{ev}", [ev])
        try:
            parse_time_or_moment(text)
        except ValueError as exc:
            fail(f"house.curtain.{ev}", f"{text!r}: {exc}")
    check_ranges(h, "house", fail)
    if h.client_id and not ids.is_id(h.client_id):
        fail("house.client_id", f"1-{ids.ID_MAX} letters, digits, '_' and '-' only")
    if h.standby:
        # Two houses under one client id (or one broker user, which the broker makes the client id) push
        # each other off the broker in turn, and neither keeps its session.
        if cfg.mqtt.username == ids.HOUSE:
            fail("house.standby", f"a standby house needs its own broker user ({ids.HOUSE_STANDBY}), not "
                 f"{ids.HOUSE!r}: two houses under one user push each other off the broker")
        elif not cfg.mqtt.username and h.client_id == f"house-{h.venue}":
            fail("house.client_id", f"{h.client_id!r} is the first house's; a standby house needs its own "
                 f"(e.g. house-{h.venue}-standby)")
    if h.token_file and not os.environ.get("GATE_DASHBOARD_TOKEN"):
        problem = secret_file_problem(h.token_file)
        if problem:
            fail("house.token_file", problem + ": the dashboard would answer without a token")


def warnings(cfg) -> list[str]:
    """An open dashboard without a token."""
    if cfg.house is not None and not cfg.house.token_file and not os.environ.get("GATE_DASHBOARD_TOKEN"):
        host, _ = parse_listen(cfg.house.listen)
        if not listen_is_private(host):
            return [f"house.listen = {cfg.house.listen!r} without house.token_file: anyone on the network "
                    "can read patron names and access needs on the dashboard"]
    return []
