"""The house and a REAL pretix server (tests/pretix_server.py): sync down, check-ins up.

One pretix server per test session; each test makes its own organizer and event in it.
"""

import csv
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from gate.boxoffice.keys import load_private_key
from gate.boxoffice.pretix_api import PretixClient
from gate.bus.codec import pack_scan
from gate.camera import MemorySource
from gate.config import parse
from gate.core.events import Code, History, ScanEvent
from gate.decide import GateRules, decide
from gate.house.attendance import export
from gate.house.build import build_house
from gate.resolve import Resolver
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from gate.state.updater import ListGuard, TicketUpdater
from tests.conftest import Collector, free_port, gate_config, publish_raw, run_gate_cli, wait_for
from tests.pretix_server import PretixServer

pytestmark = pytest.mark.slow   # a real pretix server: minutes, not seconds
_orgs = itertools.count(1)
SETUP = {}


@pytest.fixture(scope="session")
def pretix(tmp_path_factory):
    t0 = time.monotonic()
    server = PretixServer(tmp_path_factory.mktemp("pretix"))
    server.start()
    SETUP["server_s"] = time.monotonic() - t0
    sys.stderr.write(f"\npretix test server ready in {SETUP['server_s']:.1f} s\n")
    yield server
    server.remove()


def seed(pretix, **spec):
    spec.setdefault("organizer", f"org{next(_orgs)}")
    spec.setdefault("event", "gala")
    return pretix.seed(spec)


def house_toml(tmp_path, pretix, made, broker_port, venue, name="house", every=60):
    (tmp_path / f"{name}.token").write_text(made["token"] + "\n")
    text = (venue.signing_toml(publisher=True)
            + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\nclient_id = "house-{name}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nkeepalive = 5\n'
            f'[storage]\ndir = "{tmp_path}/{name}"\n'
            f'[pretix]\nurl = "{pretix.url}"\norganizer = "{made["organizer"]}"\nevent = "{made["event"]}"\n'
            f'checkin_list = {made["checkin_list"]}\ntoken_file = "{tmp_path}/{name}.token"\nsync_every_s = {every}\n')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, parse(text, str(path))


def client(pretix, made):
    return PretixClient(pretix.url, made["organizer"], made["token"])


def published_list(broker, tmp_path, venue):
    """The list the house published, applied as a gate applies it (signature, venue secret)."""
    col = Collector(broker.port, "gate/hall/tickets")
    try:
        data = wait_for(lambda: col.on("gate/hall/tickets"), 10, what="ticket list")[-1]
    finally:
        col.close()
    store = TicketStore(tmp_path / f"gate-{time.monotonic_ns()}.db")
    house_key = load_private_key(venue.key_path).public_key()
    assert TicketUpdater(store.path, guard=ListGuard("hall", [house_key], venue.secret)).apply(store, data)
    return store, data


def judge(store, text, events, now_ms=None):
    r = Resolver(store, []).resolve(Code("qr", text.encode(), text))
    h = store.history(r.ticket.ticket_id) if r.ticket else History()
    return decide(r, h, GateRules("door-a", frozenset(events)), now_ms or int(time.time() * 1000))


def checkins(pretix, made, **params):
    c = client(pretix, made)
    try:
        return list(c.pages(f"/events/{made['event']}/checkins/", params))
    finally:
        c.close()


def test_pretix_sync_signed_event_blocked_revoked_unpaid(pretix, broker, tmp_path, venue_keys):
    made = seed(pretix, signed=True, items=[{"name": "Stalls"}, {"name": "Wheelchair", "attention": True}],
                positions=[{"name": "Ada Lovelace"}, {"name": "Alan Turing", "item": 1}, {"name": "Held Back"},
                           {"name": "Not Paid", "status": "n"}, {"name": "Changed Mind", "status": "c"},
                           {"name": "Reissued"}])
    secrets = [p["secret"] for p in made["positions"]]
    pretix.seed({"action": "block", "organizer": made["organizer"], "event": "gala", "secrets": [secrets[2]]})
    new = pretix.seed({"action": "reissue", "organizer": made["organizer"], "event": "gala",
                       "secrets": [secrets[5]]})["secrets"][secrets[5]]
    path, cfg = house_toml(tmp_path, pretix, made, broker.port, venue_keys)
    assert run_gate_cli("config", "check", str(path)).returncode == 0
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync")
    assert r.returncode == 0, r.stderr
    assert "full" in r.stdout and "pretix positions:" in r.stderr   # progress, then the summary
    store, _ = published_list(broker, tmp_path, venue_keys)
    # The gate holds no pretix key in its config: the house's list brought pretix's own key.
    verdicts = [judge(store, s, ["gala"]) for s in secrets]
    assert [v.reason for v in verdicts] == ["ok", "ok", "blocked", "revoked", "revoked", "revoked"]
    assert verdicts[0].ticket.holder == "Ada Lovelace" and verdicts[0].ticket.signed
    assert verdicts[1].ticket.tags == ("attention",)
    assert judge(store, new, ["gala"]).reason == "ok"
    assert judge(store, secrets[0], ["other"]).reason == "wrong_event"
    forged = secrets[0][:-8] + ("A" if secrets[0][-8] != "A" else "B") + secrets[0][-7:]
    assert judge(store, forged, ["gala"]).reason == "forged"
    # Unblocked at the box office: the next (incremental) sync lifts it.
    pretix.seed({"action": "unblock", "organizer": made["organizer"], "event": "gala", "secrets": [secrets[2]]})
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync")
    assert r.returncode == 0 and "changed orders" in r.stdout, r.stdout + r.stderr
    store2, _ = published_list(broker, tmp_path, venue_keys)
    assert judge(store2, secrets[2], ["gala"]).reason == "ok"


def test_pretix_sync_series_two_dates(pretix, broker, tmp_path, venue_keys):
    made = seed(pretix, event="tour", dates=2, positions=[{"name": "Night One", "date": 0},
                                                          {"name": "Night Two", "date": 1}])
    d1, d2 = made["subevents"]
    path, cfg = house_toml(tmp_path, pretix, made, broker.port, venue_keys)
    assert run_gate_cli("house", "-c", str(path), "pretix", "sync").returncode == 0
    store, _ = published_list(broker, tmp_path, venue_keys)
    one, two = (p["secret"] for p in made["positions"])
    tonight = [f"tour-{d1}"]
    assert (judge(store, one, tonight).reason, judge(store, one, tonight).ticket.event) == ("ok", f"tour-{d1}")
    assert (judge(store, two, tonight).reason, judge(store, two, tonight).ticket.event) == ("wrong_event", f"tour-{d2}")


@pytest.fixture
def pretix_house(pretix, broker, tmp_path, venue_keys):
    made_houses = []

    def make(made, every=60):
        SEQ.clear()
        path, cfg = house_toml(tmp_path, pretix, made, broker.port, venue_keys, every=every)
        svc = build_house(cfg)
        svc.start()
        wait_for(svc.connected.is_set, what="house connected")
        wait_for(lambda: svc.pretix.syncs >= 1, 30, what="first pretix sync")
        made_houses.append(svc)
        return svc
    yield make
    for svc in made_houses:
        svc.close()


def test_pretix_house_syncs_again_every_n_seconds(pretix, broker, pretix_house, tmp_path, venue_keys):
    made = seed(pretix, positions=[{"name": "Soon Held"}, {"name": "Fine"}])
    held = made["positions"][0]["secret"]
    svc = pretix_house(made, every=2)
    store, _ = published_list(broker, tmp_path, venue_keys)
    assert judge(store, held, ["gala"]).reason == "ok"
    syncs = svc.pretix.syncs
    pretix.seed({"action": "block", "organizer": made["organizer"], "event": "gala", "secrets": [held]})
    wait_for(lambda: judge(published_list(broker, tmp_path, venue_keys)[0], held, ["gala"]).reason == "blocked",
             30, step=0.5, what="the next periodic sync to pass the block on")
    assert svc.pretix.syncs > syncs and svc.api()["pretix"]["sync_error"] == ""


SEQ: dict = {}


def scan(ticket, result="admitted", gate="door-a", ts=None, reason=None, event="gala"):
    """A gate's scan event; seqs count from 1 per gate for each new house."""
    SEQ[gate] = SEQ.get(gate, 0) + 1
    seq = [SEQ[gate]]
    reason = reason or {"admitted": "ok", "exited": "exit", "annulled": "not_passed"}.get(result, "unknown")
    return ScanEvent(id=f"{gate}-{seq[0]}-{time.monotonic_ns()}", gate=gate, seq=seq[0],
                     ts=ts or int(time.time() * 1000), event=event, ticket=ticket,
                     dir="out" if result == "exited" else "in", result=result, reason=reason)


def test_pretix_uploads_each_kind_and_house_agrees_with_pretix(pretix, broker, pretix_house):
    names = [f"Guest {i}" for i in range(5)] + ['=HYPERLINK("http://evil.example","click")']
    made = seed(pretix, signed=False, positions=[{"name": n} for n in names])
    svc = pretix_house(made)
    tids = [f"{p['order']}-{p['positionid']}" for p in made["positions"]]
    now = int(time.time() * 1000)
    events = [scan(tids[i], ts=now - 60_000 + i) for i in range(5)]            # five in
    events += [scan(tids[0], "exited", ts=now - 30_000)]                       # one out again
    events += [scan(tids[4], "annulled", ts=events[4].ts, gate=events[4].gate)]   # nobody passed
    events += [scan("h:0123456789abcdef", "rejected", reason="unknown", ts=now - 20_000),
               scan(tids[1], "rejected", reason="already_used", ts=now - 10_000)]
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in events])
    wait_for(lambda: svc.api().get("pretix", {}).get("uploaded") == len(events), 30, what="queue drained")
    st = client(pretix, made).list_status("gala", made["checkin_list"])
    house = next(e for e in svc.api()["events"] if e["event"] == "gala")
    assert (st["checkin_count"], st["inside_count"]) == (house["admitted"], house["inside"]) == (4, 3)
    every = checkins(pretix, made)
    failed = sorted(c["error_reason"] for c in every if not c["successful"])
    assert failed == ["already_redeemed", "annulled", "invalid"]
    api = svc.api()["pretix"]
    assert api["queue"] == 0 and api["last_success"] and api["positions"] == 6
    # CRM export: admissions with pretix's order and position, then the no-show, spreadsheet-safe.
    out = io.StringIO()
    assert export(svc, "csv", out) == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["kind"], r["ticket"]) for r in rows[:4]] == [("admitted", t) for t in tids[:4]]
    # the annulled one never came in: a no-show, like the one never scanned
    assert {(r["kind"], r["ticket"]) for r in rows[4:]} == {("no_show", tids[4]), ("no_show", tids[5])}
    assert (rows[0]["order"], rows[0]["position"], rows[0]["holder"]) == (made["positions"][0]["order"], "1", "Guest 0")
    assert next(r for r in rows if r["ticket"] == tids[5])["holder"] == "'" + names[5]
    out = io.StringIO()
    export(svc, "json", out)
    assert next(r for r in json.loads(out.getvalue()) if r["ticket"] == tids[5])["holder"] == names[5]


def test_pretix_rehearsal_and_lookup_scans_never_reach_pretix(pretix, broker, pretix_house):
    made = seed(pretix, positions=[{"name": "Rehearsed"}, {"name": "Looked Up"}, {"name": "Real"}])
    svc = pretix_house(made)
    tids = [f"{p['order']}-{p['positionid']}" for p in made["positions"]]
    events = [scan(tids[0]), scan(tids[1]), scan(tids[2])]
    events[0].mode, events[1].mode = "test", "info"
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in events])
    wait_for(lambda: svc.api()["rehearsal"] and sum(svc.api()["lookups"].values()) == 1, what="all three seen")
    # Had the other two been queued, they would go with or before the live one: never 1 with none waiting.
    wait_for(lambda: (svc.api()["pretix"]["uploaded"], svc.api()["pretix"]["queue"]) == (1, 0), 30,
             what=lambda: f"the live scan alone uploaded ({svc.api()['pretix']})")
    ok = [x for x in checkins(pretix, made) if x["successful"]]
    assert [x["position"] for x in ok] == [made["positions"][2]["id"]]


def test_pretix_checkin_made_in_pretix_is_already_used_at_the_gate(pretix, broker, pretix_house, tmp_path,
                                                                   mock_factory, venue_keys):
    made = seed(pretix, signed=True, positions=[{"name": "Early Bird"}, {"name": "On Time"}])
    early, on_time = (p["secret"] for p in made["positions"])
    status, body = client(pretix, made).redeem(early, made["checkin_list"], "box-office-app-1",
                                               int(time.time() * 1000) - 5000)
    assert status == 201, body
    # A real gate with no ticket data and no pretix key of its own, online before the house syncs.
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True, venue=venue_keys)
    cfg.gate.events = ["gala"]
    rng = np.random.default_rng(9)
    empty = compose(None, "empty", rng=rng)
    ready = threading.Event()

    def frames():
        while not ready.is_set():
            yield empty
        for code in (early, on_time):
            yield from [compose(code, "clean", rng=rng)] * 4 + [empty] * 20
    verdicts = []
    status_col = Collector(broker.port, "gate/hall/door-a/status")
    s = Scanner(cfg, MemorySource(frames(), 20), pin_factory=mock_factory, on_verdict=lambda v, w, e: verdicts.append(v))
    th = threading.Thread(target=s.run)
    th.start()
    try:
        wait_for(lambda: b"online" in b"".join(status_col.on("gate/hall/door-a/status")), 40, what="gate online")
        svc = pretix_house(made)
        house = wait_for(lambda: next((e for e in svc.api()["events"] if e["event"] == "gala"), None), 30)
        assert house["admitted"] == 1      # pretix's check-in counts in the house too
        gate_store = TicketStore(f"{cfg.storage.dir}/tickets.db")
        seed_id = "pretix-" + __import__("gate.boxoffice.pretix", fromlist=["x"]).ticket_seed(early)
        wait_for(lambda: gate_store.version and gate_store.history(seed_id).first_ts, 40,
                 what="the gate knowing the list and the used ticket")
        gate_store.close()
    finally:
        ready.set()
        th.join(60)
        status_col.close()
    assert [(v.reason, v.ticket.holder) for v in verdicts][:2] == [("already_used", "Early Bird"), ("ok", "On Time")]
    assert "at pretix" in verdicts[0].detail


def test_pretix_nonce_makes_retries_safe(pretix):
    made = seed(pretix, positions=[{"name": "Twice"}])
    c = client(pretix, made)
    secret, ts = made["positions"][0]["secret"], int(time.time() * 1000)
    assert [c.redeem(secret, made["checkin_list"], "scan-42", ts)[0] for _ in range(3)] == [201, 201, 201]
    assert len([x for x in checkins(pretix, made) if x["successful"]]) == 1


def _wait_uploaded(cfg, n, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house", timeout=2) as r:
                p = json.load(r).get("pretix", {})
            if p.get("uploaded", 0) >= n:
                return p
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not all {n} scans uploaded within {timeout} s")


def test_pretix_killed_and_restarted_mid_upload(pretix, broker, pretix_house):
    made = seed(pretix, positions=[{"name": f"P{i}"} for i in range(40)])
    svc = pretix_house(made)
    events = [scan(f"{p['order']}-{p['positionid']}") for p in made["positions"]]
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in events])
    wait_for(lambda: svc.api()["pretix"]["uploaded"] >= 5, 30, what="uploads under way")
    pretix.kill()
    try:
        wait_for(lambda: svc.api()["pretix"]["last_error"], 20, what="the house noticing pretix is gone")
        assert svc.api()["pretix"]["queue"] > 0
    finally:
        pretix.start()
    wait_for(lambda: svc.api()["pretix"]["uploaded"] == 40, 90, what="queue drained after restart")
    ok = [x for x in checkins(pretix, made) if x["successful"]]
    assert len(ok) == 40 and len({x["position"] for x in ok}) == 40
    st = client(pretix, made).list_status("gala", made["checkin_list"])
    assert st["checkin_count"] == next(e for e in svc.api()["events"] if e["event"] == "gala")["admitted"] == 40


def test_pretix_house_sigkilled_mid_upload(pretix, broker, tmp_path, venue_keys):
    made = seed(pretix, positions=[{"name": f"K{i}"} for i in range(60)])
    SEQ.clear()
    path, cfg = house_toml(tmp_path, pretix, made, broker.port, venue_keys, name="house-k")
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    cmd = [sys.executable, "-m", "gate.cli", "house", "-c", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_uploaded(cfg, 0, 30)
        events = [scan(f"{p['order']}-{p['positionid']}") for p in made["positions"]]
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in events])
        _wait_uploaded(cfg, 3, 30)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        done_before = len([x for x in checkins(pretix, made) if x["successful"]])
        assert 0 < done_before < 60, done_before      # really killed mid-upload
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        _wait_uploaded(cfg, 60, 120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    ok = [x for x in checkins(pretix, made) if x["successful"]]
    assert len(ok) == 60 and len({x["position"] for x in ok}) == 60


# -- a standby house: only the active house publishes and uploads, and the upload moves with the job -----
# (gate/house/standby.py). The standby keeps its own copy of pretix's data warm (reads only). After kill -9 of
# the active house it publishes the list, uploads its own queue (what the dead house had uploaded already
# goes again under the same nonces) and the new scans: each once in pretix.


def _standby_api(cfg):
    try:
        with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house", timeout=2) as r:
            return json.load(r)
    except (OSError, ValueError):
        return {}


def _standby_start(path, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(path)], stdout=log, stderr=log,
                            env=dict(os.environ, GPIOZERO_PIN_FACTORY="mock"))


def test_pretix_standby_upload_runs_only_on_the_active_house_and_moves_with_it(pretix, broker, tmp_path,
                                                                                 venue_keys):
    made = seed(pretix, positions=[{"name": f"S{i}"} for i in range(12)])
    tickets = [f"{p['order']}-{p['positionid']}" for p in made["positions"]]
    SEQ.clear()
    first_path, first = house_toml(tmp_path, pretix, made, broker.port, venue_keys, name="first")
    second_path, second = house_toml(tmp_path, pretix, made, broker.port, venue_keys, name="second")
    second_path.write_text(second_path.read_text().replace("[house]\n", "[house]\nstandby = true\n"))
    procs = {"first": _standby_start(first_path, tmp_path, "first")}
    try:
        wait_for(lambda: _standby_api(first).get("pretix", {}).get("syncs", 0) >= 1, 60, what="the first house synced")
        procs["second"] = _standby_start(second_path, tmp_path, "second")
        wait_for(lambda: _standby_api(second).get("houses", {}).get("role") == "standby", 30, what="the standby up")
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan(t)) for t in tickets[:6]])
        wait_for(lambda: _standby_api(first)["pretix"]["uploaded"] == 6, 30, what="six uploaded by the first house")
        wait_for(lambda: _standby_api(second)["pretix"]["queue"] == 6, 10, what="the standby's queue holds them")
        wait_for(lambda: _standby_api(second).get("pretix", {}).get("syncs", 0) >= 1, 30, what="the standby's own copy read")
        p = _standby_api(second)["pretix"]
        # Its copy of pretix's data is warm (read only); no list published, nothing uploaded.
        assert (p["positions"], p["lists"], p["uploaded"], p["last_success"]) == (12, 0, 0, None), p

        t0 = time.monotonic()
        procs["first"].kill()
        procs["first"].wait()
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan(t)) for t in tickets[6:]])
        wait_for(lambda: _standby_api(second).get("pretix", {}).get("uploaded") == 12, 60, what="the standby uploads all")
        took = time.monotonic() - t0
        print(f"kill -9 to the standby's queue uploaded (one sync, 12 scans): {took:.1f} s")
        assert took < 10, took
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ok = [x for x in checkins(pretix, made) if x["successful"]]
    assert len(ok) == 12 and len({x["position"] for x in ok}) == 12   # the six repeated uploads: once each
    st = client(pretix, made).list_status("gala", made["checkin_list"])
    assert st["checkin_count"] == 12
