"""Staff cards and venue control messages against a live show, with real parts: the real loop reading
rendered codes, gpiozero's MockFactory, real SQLite, a real Mosquitto, the real commands.

A photographed card or a recorded control message must never let a ticket that was used live in again,
a revoked card must stop working on every gate within seconds, and a gate must never apply an older
control message than the newest it applied, restart or not."""

import json
import logging
import re
import sqlite3
import threading
import time

import pytest

from gate.boxoffice.keys import load_private_key
from gate.boxoffice.staff import CARD, CONTROL, sign_control
from gate.core.events import RemoteScan, ScanEvent
from gate.scanner import Scanner
from tests.conftest import Collector, run_gate_cli, wait_for
from tests.test_modes import EMPTY, PASSAGE, RELAY, card, gate, show, venue_message

STAFF_KEY = "keys/staff.key"


def releases(mock_factory) -> int:
    return [st.state for st in mock_factory.pin(RELAY).states].count(True)


def used_at_door_b(ticket, ts_ms):
    """Another gate's live admission of `ticket`, as the bus delivers it (used-ticket sync)."""
    return RemoteScan(ScanEvent(id=f"door-b-{ticket}", gate="door-b", seq=1, ts=ts_ms, event="eve", ticket=ticket,
                                dir="in", result="admitted", reason="ok"))


def test_staff_live_photographed_test_card_cannot_readmit_used_tickets(tmp_path, mock_factory, tickets_csv):
    """At a live door a `test` card is refused, visibly: tickets used live here (T1) and at another door
    (T2) stay `already_used`, and the relay releases for the first entry only."""
    test = card(tmp_path, "test", name="Photographed")
    holder = {}

    def frames():
        yield from show("CODE-0001")
        holder["s"].parts.control.put(used_at_door_b("T2", int(time.time() * 1000) - 60_000))
        yield from show(test) + show("CODE-0001") + show("CODE-0002") + [EMPTY] * 3
    s, verdicts, shown = gate(tmp_path, mock_factory, tickets_csv, frames())
    holder["s"] = s
    assert s.run() == 0
    got = [(e.mode, v.result, v.reason, e.ticket) for v, e in verdicts]
    assert got == [("live", "admitted", "ok", "T1"), ("live", "rejected", "already_used", "T1"),
                   ("live", "rejected", "already_used", "T2")]
    assert releases(mock_factory) == 1
    assert ("rules", ("STAFF Photographed", "TEST REFUSED", "VENUE IS LIVE")) in shown
    assert s.modes.mode == "entry" and s.modes.event_mode == "live" and s.admission.staff_events == []


def test_staff_live_rehearsal_never_readmits_a_ticket_used_live(tmp_path, mock_factory, tickets_csv):
    """Even in a venue rehearsal (a genuine `gate venue test`), a ticket used live is judged by its live
    record; an unused one rehearses as before."""
    holder = {}

    def frames():
        yield from show("CODE-0001")
        holder["s"].parts.control.put(venue_message(tmp_path, "test"))
        yield from show("CODE-0001") + show("CODE-0002") + [EMPTY] * 3
    s, verdicts, _ = gate(tmp_path, mock_factory, tickets_csv, frames())
    holder["s"] = s
    assert s.run() == 0
    got = [(e.mode, v.reason, e.ticket) for v, e in verdicts]
    assert got == [("live", "ok", "T1"), ("test", "already_used", "T1"), ("test", "ok", "T2")]


def test_staff_live_revoked_clear_card_no_longer_clears_the_latch(tmp_path, broker, mock_factory, tickets_csv,
                                                                   venue_keys):
    """`gate staff revoke` re-signs the retained list with the card in it; the running gate has it within
    seconds, and the photographed `clear` card leaves the door out of order. Another clear card works."""
    from tests.conftest import boxoffice_config
    box = str(boxoffice_config(tmp_path, broker.port, signing=venue_keys.signing_toml(publisher=True)))
    r = run_gate_cli("tickets", "import", "-c", box, str(tickets_csv), "--publish")
    assert r.returncode == 0, r.stderr
    lost = card(tmp_path, "clear", name="Lost", card_id="00000000000000c1")
    spare = card(tmp_path, "clear", name="Duty Manager", card_id="00000000000000c2")
    step = {k: threading.Event() for k in ("lost", "spare")}

    def frames():
        while not step["lost"].is_set():
            yield EMPTY
        yield from show(lost)
        while not step["spare"].is_set():
            yield EMPTY
        yield from show(spare) + show("CODE-0001") + [EMPTY] * 10
    s, verdicts, shown = gate(tmp_path, mock_factory, tickets_csv, frames(), mqtt_on=True, port=broker.port,
                              venue=venue_keys, passage="passage_pin = 5")
    th = threading.Thread(target=s.run)
    th.start()
    db = sqlite3.connect(f"file:{s.store.path}?mode=ro", uri=True)
    try:
        wait_for(lambda: db.execute("SELECT value FROM meta WHERE key='list_seq'").fetchone(), what="list applied")
        mock_factory.pin(PASSAGE).drive_high()   # someone climbed over: out of order
        mock_factory.pin(PASSAGE).drive_low()
        wait_for(lambda: s.modes.latched() == "passage with no release", what="latched")
        t0 = time.monotonic()
        r = run_gate_cli("staff", "revoke", "-c", box, "00000000000000C1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 revoked staff card(s)" in r.stdout
        wait_for(lambda: db.execute("SELECT 1 FROM staff_revoked WHERE card_id='00000000000000c1'").fetchone(),
                 what="the revocation on the gate")
        took = time.monotonic() - t0
        before = [r for r, _ in shown].count("out_of_order")
        step["lost"].set()
        wait_for(lambda: [r for r, _ in shown].count("out_of_order") > before, what="the lost card refused")
        assert s.modes.latched() == "passage with no release"
        step["spare"].set()
        wait_for(lambda: verdicts, 20, what="back in service")
        th.join(20)
    finally:
        step["lost"].set()
        step["spare"].set()
        s.stop.set()
        th.join(10)
        db.close()
    assert took < 10, f"revocation took {took:.1f} s to reach the gate"
    assert s.admission.staff_events == [("Duty Manager", "latch cleared")]
    assert [(v.reason, e.ticket) for v, e in verdicts][:1] == [("ok", "T1")]   # the re-signed list's tickets
    bad = run_gate_cli("staff", "revoke", "-c", box, "not-a-card")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.slow   # about 10 s: make test-slow runs it
def test_staff_live_revoke_without_a_retained_list_says_so(tmp_path, broker, venue_keys):
    from tests.conftest import boxoffice_config
    box = str(boxoffice_config(tmp_path, broker.port, signing=venue_keys.signing_toml(publisher=True)))
    r = run_gate_cli("staff", "revoke", "-c", box, "00000000000000c1")
    assert r.returncode == 1 and "no ticket list is retained" in r.stderr and "Traceback" not in r.stderr
    assert "recorded" in r.stdout   # kept: the next list published carries it
    r = run_gate_cli("staff", "revoke", "-c", box, "00000000000000c1", "--allow-empty")
    assert r.returncode == 0, r.stderr


def test_staff_live_card_turned_into_a_control_message_and_back(tmp_path, broker, mock_factory, tickets_csv,
                                                                caplog):
    """A photographed `test` card published as a venue control message moves neither a gate nor the house;
    a recorded `test` control message shown as a card at the gate is forged."""
    from gate.config import parse
    from gate.house.build import build_house
    from tests.conftest import api, house_config, publish_raw
    caplog.set_level(logging.WARNING)
    photographed = card(tmp_path, "test", name="Photographed")
    hpath = house_config(tmp_path, broker.port).path
    text = open(hpath).read() + f'\n[signing]\nstaff_keys = ["{tmp_path / "keys" / "staff.pub"}"]\n'
    open(hpath, "w").write(text)
    hcfg = parse(text, hpath)
    house = build_house(hcfg)
    house.start()
    recorded = sign_control(load_private_key(tmp_path / STAFF_KEY), "hall", "box office", "test", int(time.time()))
    go = threading.Event()

    def frames():
        while not go.is_set():
            yield EMPTY
        yield from show(CARD + recorded[len(CONTROL):]) + show("CODE-0001") + [EMPTY] * 5
    s = None
    try:
        wait_for(house.connected.is_set, what="house connected")
        s, verdicts, _ = gate(tmp_path, mock_factory, tickets_csv, frames(), mqtt_on=True, port=broker.port)
        th = threading.Thread(target=s.run)
        th.start()
        wait_for(lambda: any(g.get("state") == "online" for g in api(hcfg)["gates"]), what="gate online")
        publish_raw(broker.port, "gate/hall/control", [(CONTROL + photographed[len(CARD):]).encode()])
        wait_for(lambda: house.venue_mode.refused >= 1, what="the house refused it")
        wait_for(lambda: "refused a venue control message" in caplog.text, what="the gate refused it")
        assert s.modes.venue == "live" and api(hcfg)["mode"] == "live"
        go.set()
        th.join(30)
        assert [(e.mode, v.reason) for v, e in verdicts] == [("live", "forged"), ("live", "ok")]
        assert s.modes.mode == "entry"
    finally:
        go.set()
        if s is not None:
            s.stop.set()
        house.close()


@pytest.mark.slow   # about 9 s: make test-slow runs it
def test_staff_live_stale_control_message_after_a_gate_restart_is_ignored(tmp_path, broker, mock_factory,
                                                                        tickets_csv, caplog):
    """The venue rehearses, then goes live; T1 is used live. The gate stops (a power cut); someone puts
    the recorded, genuinely signed rehearsal message back on the control topic. The gate is rebuilt on the
    same storage: it stays live, and T1 stays used."""
    from tests.conftest import boxoffice_config, publish_retained
    caplog.set_level(logging.INFO)
    card(tmp_path, "entry")   # the staff key pair
    key = str(tmp_path / STAFF_KEY)
    first = threading.Event()

    def frames():
        while not first.is_set():
            yield EMPTY
        yield from show("CODE-0001") + [EMPTY] * 5
    s, verdicts, _ = gate(tmp_path, mock_factory, tickets_csv, frames(), mqtt_on=True, port=broker.port)
    th = threading.Thread(target=s.run)
    th.start()
    col = Collector(broker.port, "gate/hall/control")
    try:
        box = str(boxoffice_config(tmp_path, broker.port, wait_s=3))
        r = run_gate_cli("venue", "test", "-c", box, "--key", key)
        # no house runs in this test: the command names it as the one that did not confirm (exit 1)
        assert r.returncode == 1 and "not confirmed by house (1 of 2" in r.stderr, r.stdout + r.stderr
        assert re.search(r"door-a +test +confirmed", r.stdout), r.stdout
        wait_for(lambda: s.modes.venue == "test", what="rehearsal")
        stale = wait_for(lambda: col.on("gate/hall/control"), what="the rehearsal message, recorded")[-1]
        time.sleep(1.1)   # control messages are stamped in whole seconds
        r = run_gate_cli("venue", "live", "-c", box, "--key", key)
        assert r.returncode == 1 and re.search(r"door-a +live +confirmed", r.stdout), r.stdout + r.stderr
        wait_for(lambda: s.modes.venue == "live", what="live")
        first.set()
        th.join(30)
    finally:
        first.set()
        s.stop.set()
        th.join(10)
        col.close()
    assert [(e.mode, v.reason, e.ticket) for v, e in verdicts] == [("live", "ok", "T1")]

    publish_retained(broker.port, "gate/hall/control", stale)   # the replay, retained in place of the live one
    caplog.clear()
    again = threading.Event()

    def frames2():
        while not again.is_set():
            yield EMPTY
        yield from show("CODE-0001") + [EMPTY] * 5
    verdicts2 = []
    s2 = Scanner(s.cfg, _source(frames2()), pin_factory=mock_factory,
                 on_verdict=lambda v, w, e: verdicts2.append((v, e)))
    th2 = threading.Thread(target=s2.run)
    th2.start()
    try:
        wait_for(lambda: "an older venue control message" in caplog.text or s2.modes.venue != "live", 15,
                 what="the stale message heard")
        assert s2.modes.venue == "live"
        # genuine but stale: said at INFO, not as an attack (tests/test_logs.py)
        said = [r.levelno for r in caplog.records if "an older venue control message (test by box office"
                in r.getMessage()]   # queued in the gate's session and retained: heard once or twice
        assert said and set(said) == {logging.INFO}
        again.set()
        th2.join(30)
    finally:
        again.set()
        s2.stop.set()
        th2.join(10)
    assert [(e.mode, v.reason, e.ticket) for v, e in verdicts2] == [("live", "already_used", "T1")]
    saved = json.loads((tmp_path / "state-door-a" / "venue-control").read_text())
    assert saved["mode"] == "live" and saved["issued"] == s2.modes.venue_issued > 0
    assert "ignored: the one in force was signed at" in caplog.text


def _source(frames):
    from gate.camera import MemorySource
    from tests.test_modes import paced
    return MemorySource(paced(frames), 0)
