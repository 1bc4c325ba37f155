"""Helpers for the tests that run the house against the hostile pretix (tests/pretix_hostile.py)."""

from __future__ import annotations

import json
import time
import urllib.request

from gate.boxoffice.keys import keyring, load_private_key
from gate.boxoffice.lists import verify_list
from gate.config import parse
from gate.core.events import ScanEvent
from gate.house.build import HouseParts, build_house
from tests.conftest import Collector, free_port, wait_for

TOKEN = "hostile-token-0123456789"


def house_toml(tmp_path, srv, broker_port, venue, name="house", every=60, timeout=2.0, token=TOKEN, parsed=True):
    (tmp_path / f"{name}.token").write_text(token + "\n", encoding="utf-8")
    text = (venue.signing_toml(publisher=True)
            + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\nclient_id = "house-{name}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nkeepalive = 5\n'
            f'[storage]\ndir = "{tmp_path}/{name}"\n'
            f'[pretix]\nurl = "{srv.url}"\norganizer = "{srv.organizer}"\nevent = "{srv.event}"\n'
            f'checkin_list = {srv.list_id}\ntoken_file = "{tmp_path}/{name}.token"\nsync_every_s = {every}\n'
            f'timeout_s = {timeout}\n')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, parse(text, str(path)) if parsed else None


def start_house(cfg, first_sync=True) -> HouseParts:
    SEQ.clear()   # a new house: each gate's seqs count from 1 again
    svc = build_house(cfg)
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    if first_sync:
        wait_for(lambda: svc.pretix.syncs >= 1 or svc.pretix.last_sync_error or svc.pretix.last_result, 30,
                 what="first pretix sync")
    return svc


def list_header(payload: bytes, venue):
    """The signed header of a published ticket list (tickets, seq), checked with the house's key."""
    h, _ = verify_list(payload, keyring([load_private_key(venue.key_path).public_key()]))
    return h


def retained_list(broker_port):
    """The ticket list retained on the broker now (None when there is none)."""
    col = Collector(broker_port, "gate/hall/tickets")
    try:
        time.sleep(0.5)
        got = col.on("gate/hall/tickets")
    finally:
        col.close()
    return got[-1] if got else None


def api_http(cfg) -> dict:
    with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house", timeout=5) as r:
        return json.load(r)


SEQ: dict = {}


def scan(ticket, result="admitted", gate="door-a", ts=None, reason=None, event="gala"):
    SEQ[gate] = SEQ.get(gate, 0) + 1
    reason = reason or {"admitted": "ok", "exited": "exit", "annulled": "not_passed"}.get(result, "unknown")
    return ScanEvent(id=f"{gate}-{SEQ[gate]}-{time.monotonic_ns()}", gate=gate, seq=SEQ[gate],
                     ts=ts or int(time.time() * 1000), event=event, ticket=ticket,
                     dir="out" if result == "exited" else "in", result=result, reason=reason)
