"""Every house worker (ingest, web, pretix sync, pretix upload) outlives what it did not expect:
the error is logged once with its cause, shown in /api/house, and the worker starts again with
backoff. The units' memory limits fit a Pi Zero 2 W and `gate doctor` shows them."""

import json
import logging

from gate.bus.codec import pack_scan
from gate.core.supervisor import Supervised, Workers
from gate.core.unitlimits import check, parse_size
from gate.house.build import build_house
from tests.conftest import REPO, Collector, free_port, publish_raw, run_gate_cli, wait_for
from tests.hostile_house import api_http, house_toml, list_header, retained_list, scan, start_house
from tests.pretix_hostile import HostilePretix


def plain_house(tmp_path, broker, venue_keys):
    from gate.config import parse
    text = (venue_keys.signing_toml() + f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nkeepalive = 5\n[storage]\ndir = "{tmp_path}/h"\n')
    svc = build_house(parse(text, str(tmp_path / "h.toml")))
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    return svc


def worker(svc, name):
    return next(w for w in api_http(svc.cfg)["workers"] if w["name"] == name)


def test_supervisor_restarts_with_backoff_and_logs_a_repeat_once(caplog):
    runs = []

    class Flaky(Supervised):
        min_backoff, max_backoff = 0.05, 0.2

        def run(self):
            runs.append(1)
            if len(runs) <= 3:
                raise KeyError("same every time")
            self.stopping.wait()
    sup = Flaky("t")
    workers = Workers(sup)
    with caplog.at_level(logging.DEBUG, logger="gate.core.supervisor"):
        sup.start()
        wait_for(lambda: len(runs) == 4, 5, what="three restarts")
        st = workers.report()[0]
        assert sup.alive                 # alive while it mends itself: a watchdog keeps pinging
        sup.stop()
    assert (st["state"], st["restarts"], st["failures"]) == ("running", 3, 3)
    assert st["last_error"].startswith("KeyError: 'same every time' (at test_house_supervised.py:")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info        # once, with its traceback
    assert not sup.alive and workers.report()[0]["state"] == "stopped"


def test_house_ingest_worker_survives_an_exception_and_counts_on(tmp_path, broker, venue_keys, caplog):
    svc = plain_house(tmp_path, broker, venue_keys)
    real, calls = svc.intake.ingest.retry_due, []

    def broken():        # a fault where no guard was written: the worker's own loop raises
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("disk on fire")
        return real()
    try:
        with caplog.at_level(logging.ERROR):
            svc.intake.ingest.retry_due = broken
            w = wait_for(lambda: worker(svc, "house")["failures"] == 2 and worker(svc, "house"), 10,
                         what="two failures")
            assert "RuntimeError: disk on fire" in w["last_error"]
            publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan("T1", event="eve"))])
            wait_for(lambda: any(e["event"] == "eve" and e["admitted"] == 1 for e in svc.api()["events"]), 10,
                     what="counted after the restarts")
        assert worker(svc, "house")["state"] == "running" and worker(svc, "house")["restarts"] == 2
        assert len([r for r in caplog.records if "worker house failed" in r.getMessage()]) == 1
        assert svc.intake.alive      # what run.py pings the systemd watchdog on
    finally:
        svc.close()


def test_house_worker_step_that_raises_is_counted_logged_and_the_next_step_runs(caplog):
    """The intake, publisher and watch run each step through `Drops.guarded`: a step that raises is counted
    (`internal_error`) and logged at DEBUG on the worker's own logger, and the next step runs."""
    from gate.bus.limits import Drops
    drops, worker_log, ran = Drops(logging.getLogger("gate.house.state")), logging.getLogger("gate.house.watch"), []

    def tell_arrivals():
        raise KeyError("T1")
    with caplog.at_level(logging.DEBUG, logger="gate.house.watch"):
        drops.guarded(worker_log, tell_arrivals)
        drops.guarded(worker_log, ran.append, "the next step")
    assert drops.get("internal_error") == 1 and ran == ["the next step"]
    debug = [(r.name, r.getMessage(), r.exc_info and r.exc_info[0]) for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == [("gate.house.watch", "tell_arrivals failed", KeyError)]


def test_house_web_keeps_serving_when_the_state_cannot_be_made(tmp_path, broker, venue_keys, caplog):
    svc = plain_house(tmp_path, broker, venue_keys)
    real = svc.query.ticket_lists
    try:
        with caplog.at_level(logging.ERROR):
            svc.query.ticket_lists = lambda: 1 / 0     # a part of the state that cannot be made
            said = [api_http(svc.cfg) for _ in range(5)]
        assert all("ZeroDivisionError" in s["error"] for s in said)
        assert len([r for r in caplog.records if "could not report its state" in r.getMessage()]) == 1
        svc.query.ticket_lists = real
        state = api_http(svc.cfg)
        assert "error" not in state and worker(svc, "http")["state"] == "running"
        assert {w["name"] for w in state["workers"]} == {"house", "house-publisher", "house-watch", "http"}
    finally:
        svc.close()


def test_pretix_sync_worker_restarts_when_the_list_cannot_be_signed(tmp_path, broker, venue_keys):
    srv = HostilePretix().start()
    srv.add_positions(5)
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys, every=1)
    (tmp_path / "house").mkdir()
    (tmp_path / "house" / "list-publisher.json").write_text("{ not json")    # a damaged series file
    alerts = Collector(broker.port, "gate/hall/house/alerts")
    svc = start_house(cfg, first_sync=False)
    try:
        w = wait_for(lambda: worker(svc, "pretix-sync")["failures"] >= 1 and worker(svc, "pretix-sync"), 15,
                     what="the sync worker failing")
        assert "GateError" in w["last_error"] and "list-publisher.json: unreadable" in w["last_error"]
        assert "list-publisher.json" in api_http(svc.cfg)["pretix"]["sync_error"]
        assert worker(svc, "pretix-upload")["failures"] == 0           # uploads carry on meanwhile
        wait_for(lambda: any(a["key"] == "sync:worker" for a in svc.api()["alarms"]), 10, what="alert")
        (tmp_path / "house" / "list-publisher.json").unlink()         # the operator moves it away
        wait_for(lambda: retained_list(broker.port), 30, step=0.5, what="the list, after the restart")
        assert list_header(retained_list(broker.port), venue_keys).tickets == 5
        wait_for(lambda: not svc.api()["alarms"], 10, what="alert cleared")
        kinds = [json.loads(p)["kind"] for p in alerts.on("gate/hall/house/alerts")]
        assert kinds and set(kinds) == {"sync"}
    finally:
        alerts.close()
        svc.close()
        srv.stop()


def test_deploy_units_set_memory_limits_that_fit_a_pi_zero_2_w(tmp_path):
    for unit in ("gate-scan.service", "gate-house.service"):
        ok, said = check(unit, dirs=(str(REPO / "systemd"),), ram=512)
        assert ok and "MemoryHigh=" in said and "MemoryMax=" in said, said
    limits = [parse_size(line.split("=", 1)[1]) for unit in ("gate-scan", "gate-house")
              for line in (REPO / "systemd" / f"{unit}.service").read_text().splitlines()
              if line.startswith("MemoryMax=")]
    assert len(limits) == 2 and sum(limits) <= 400 * 2**20      # both on one 512 MB Pi, with room for the OS
    bare = tmp_path / "gate-house.service"
    bare.write_text("[Service]\nExecStart=/opt/gate/.venv/bin/gate house -c /etc/gate/house.toml\n")
    ok, said = check("gate-house.service", dirs=(str(tmp_path),), ram=512)
    assert not ok and "no MemoryMax" in said
    (tmp_path / "gate-house.service.d").mkdir()
    (tmp_path / "gate-house.service.d" / "mem.conf").write_text("[Service]\nMemoryMax=1G\n")
    ok, said = check("gate-house.service", dirs=(str(tmp_path),), ram=512)
    assert not ok and "more than the machine has" in said


def test_deploy_doctor_shows_the_memory_limits(tmp_path, broker):
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'[house]\nvenue="hall"\n[mqtt]\nhost="127.0.0.1"\nport={broker.port}\n'
                   f'[storage]\ndir="{tmp_path}/s"\n')
    r = run_gate_cli("doctor", "-c", str(cfg))
    line = next(x for x in r.stdout.splitlines() if " memory " in x)
    assert line.startswith("OK") and "gate-house.service" in line and "MemoryMax=160M" in line, r.stdout
