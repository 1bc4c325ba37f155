"""A full disk under the gate's storage, on a real small tmpfs: the reserve keeps scans
recorded, a truly full disk keeps the turnstile shut (no release without a durable
record) while verdicts go on, and a restart on a full disk still comes up."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import gate_config, wait_for

RELAY = 24


@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(d)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def fill(d, name):
    """Take every last block, as a runaway log would."""
    fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def verdict_for(s, code):
    """Present one rendered ticket to the real decoder and loop; the verdict and its scan event."""
    got = []
    s.on_verdict = lambda v, w, e: got.append((v, e))
    src = MemorySource([compose(code, "clean")], 0)
    src.start()
    s.process(src.read(1))
    src.close()
    assert got, f"no verdict for {code}"
    return got[-1]


def pulses(pin):
    return sum(1 for st in pin.states if st.state)


def test_disk_full_reserve_then_no_release_without_a_record(tmp_path, small_disk, mock_factory, tickets_csv, caplog):
    """Used to end in `database or disk is full`, `cannot rollback` and a traceback, after the LED
    had shown green; and a restart on the full disk failed with `disk I/O error`."""
    cfg = gate_config(tmp_path, storage=str(small_disk), debounce=0.0)
    st = TicketStore(small_disk / "tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    caplog.set_level(logging.INFO)
    s = Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory, connect=False)
    relay = mock_factory.pin(RELAY)
    try:
        assert (small_disk / "outbox-reserve").exists()
        fill(small_disk, "runaway.log")
        v, e = verdict_for(s, "CODE-0001")            # the reserve makes room: recorded, released
        assert v.admitted and e.seq == 1
        wait_for(lambda: pulses(relay) == 1 and not relay.state, what="one release, over")
        assert any("released the 4 MB outbox reserve" in r.getMessage() for r in caplog.records)
        fill(small_disk, "runaway2.log")               # and now nothing is left
        released = s.turnstile.released_until
        v, e = verdict_for(s, "CODE-0002")
        assert v.admitted and e.seq == 0               # decided and shown, but not on disk ...
        assert s.turnstile.released_until == released and pulses(relay) == 1   # ... so no release was asked for
        said = [r.getMessage() for r in caplog.records if "DISK FULL" in r.getMessage()]
        assert len(said) == 1 and "do not release the turnstile" in said[0]
        s.capture.camera_ok = True                     # (frames are handed in directly, not captured)
        s._update_faults()
        h = s.health()
        assert s.fault == "disk" and h["disk_full"] is True and h["unrecorded"] == 1
        v, e = verdict_for(s, "NOT-A-TICKET")          # scanning goes on, every verdict decided
        assert v.result == "rejected" and e.seq == 0
        (small_disk / "runaway.log").unlink()          # someone frees space
        v, e = verdict_for(s, "CODE-0005")
        assert v.admitted and e.seq == 2 and not s.admission.disk_full
        wait_for(lambda: pulses(relay) == 2 and not relay.state, what="the release once there is room")
    finally:
        s.close()
    # Restart on a full disk: comes up (the reserve, made again at start, is given up) and says why.
    (small_disk / "runaway2.log").unlink()
    Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory, connect=False).close()
    assert (small_disk / "outbox-reserve").exists()
    fill(small_disk, "runaway3.log")
    caplog.clear()
    s = Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory, connect=False)
    try:
        v, e = verdict_for(s, "CODE-0003")
        assert v.result == "rejected" and v.reason == "wrong_event"
    finally:
        s.close()
    assert "Traceback" not in caplog.text


def test_disk_low_space_warned_in_log_health_and_doctor(tmp_path, small_disk, mock_factory, tickets_csv, caplog):
    cfg = gate_config(tmp_path, storage=str(small_disk))
    caplog.set_level(logging.INFO)
    s = Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory, connect=False)
    try:
        s._update_faults()
        assert s.health()["disk_free_mb"] < 30
        said = [r.getMessage() for r in caplog.records if "low disk space" in r.getMessage()]
        assert len(said) == 1 and str(small_disk) in said[0]
    finally:
        s.close()
    from tests.conftest import run_gate_cli
    toml = tmp_path / "door-a.toml"
    r = run_gate_cli("doctor", "-c", str(toml))
    assert "FAIL storage" in r.stdout and "MB free" in r.stdout, r.stdout


def remount_ro(d):
    r = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot remount a tmpfs read-only here: {r.stderr.decode().strip()}")


def test_disk_read_only_storage_decides_shows_and_never_releases(tmp_path, small_disk, mock_factory, tickets_csv,
                                                                 broker, caplog):
    """An SD card the kernel remounted read-only: the gate used to die at start in the reserve code.
    Now it comes up, decides from the tickets and the record of use it has, shows every verdict, records
    nothing, releases nothing, says why (log, health, fault blink, doctor), and still sends what its
    outbox held."""
    from tests.conftest import Collector, run_gate_cli
    cfg = gate_config(tmp_path, storage=str(small_disk), debounce=0.0, port=broker.port, mqtt_on=True)
    st = TicketStore(small_disk / "tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    s = Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory, connect=False)   # offline: events wait
    try:
        v, e = verdict_for(s, "CODE-0001")
        assert v.admitted and e.seq == 1
        instance = s.parts.instance
    finally:
        s.close()
    (small_disk / "outbox-reserve").unlink()   # released earlier: the start-up used to trip over it
    remount_ro(small_disk)
    col = Collector(broker.port, "gate/hall/door-a/scan", "gate/hall/door-a/status")
    caplog.set_level(logging.INFO)
    s = Scanner(cfg, MemorySource([], 0), pin_factory=mock_factory)
    relay = mock_factory.pin(RELAY)
    try:
        said = [r.getMessage() for r in caplog.records if "STORAGE READ-ONLY" in r.getMessage()]
        assert said and "read-only file system" in said[0] and "releases no turnstile" in said[0]
        assert s.parts.instance == instance, "the same device after a restart, read-only or not"
        s.parts.updater.start()
        s.link.start()
        wait_for(lambda: col.on("gate/hall/door-a/scan"), what="the outbox's event sent from read-only storage")
        pulses_before, released = pulses(relay), s.turnstile.released_until
        v, e = verdict_for(s, "CODE-0001")            # its record of use is read: used already
        assert (v.result, v.reason, e.seq) == ("rejected", "already_used", 0)
        v, e = verdict_for(s, "CODE-0005")            # admissible, decided and shown ...
        assert v.admitted and e.seq == 0               # ... but not on disk,
        assert s.turnstile.released_until == released and pulses(relay) == pulses_before   # so no release asked
        msgs = [r.getMessage() for r in caplog.records if "STORAGE READ-ONLY:" in r.getMessage() and "not recorded"
                in r.getMessage()]
        assert len(msgs) == 1 and "do not release the turnstile" in msgs[0]
        s.capture.camera_ok = True
        s._update_faults()
        h = s.health()
        assert s.fault == "disk" and h["disk_readonly"] is True and h["unrecorded"] == 2
        statuses = [json.loads(p) for p in col.on("gate/hall/door-a/status")]
        assert statuses and statuses[-1]["state"] == "online" and statuses[-1]["instance"] == instance
    finally:
        s.close()
        col.close()
    assert "Traceback" not in caplog.text
    r = run_gate_cli("doctor", "-c", str(tmp_path / "door-a.toml"))
    assert "FAIL storage" in r.stdout and "read-only file system" in r.stdout, r.stdout
    # The real command on the read-only card: starts, prints its verdicts, exits 0, no traceback.
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image
    for i, code in enumerate(("CODE-0005", None, "CODE-0001")):
        Image.fromarray(compose(code, "clean") if code else compose(None, "empty")).save(frames / f"{i:03d}.png")
    r = run_gate_cli("scan", "-c", str(tmp_path / "door-a.toml"), "--offline", "--json",
                     "--source", f"replay:{frames}@10")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    got = [(x["result"], x["reason"], x["seq"]) for x in map(json.loads, r.stdout.splitlines())]
    assert got == [("admitted", "ok", 0), ("rejected", "already_used", 0)], got
    assert "STORAGE READ-ONLY" in r.stderr


def test_disk_read_only_databases_open_after_a_clean_close_and_after_a_crash(tmp_path, small_disk):
    """A cleanly closed WAL database has no -shm, which read-only storage cannot make (opened immutable);
    one left by a crash has its -wal and -shm, and its newest rows are in the WAL (opened read-only)."""
    import sqlite3
    import sys

    from gate.core.sqlitefile import readonly_uri
    clean = sqlite3.connect(small_disk / "clean.db", isolation_level=None)
    clean.execute("PRAGMA journal_mode=WAL")
    clean.execute("CREATE TABLE t (x)")
    clean.execute("INSERT INTO t VALUES (1)")
    clean.close()
    subprocess.run([sys.executable, "-c", "import os, sqlite3\n"
                    f"d = sqlite3.connect({str(small_disk / 'crashed.db')!r}, isolation_level=None)\n"
                    "d.execute('PRAGMA journal_mode=WAL'); d.execute('CREATE TABLE t (x)')\n"
                    "d.execute('INSERT INTO t VALUES (2)'); os._exit(0)"], check=True)
    assert (small_disk / "crashed.db-wal").exists()
    remount_ro(small_disk)
    for name, want in (("clean.db", 1), ("crashed.db", 2)):
        uri = readonly_uri(small_disk / name)
        db = sqlite3.connect(uri, uri=True)
        assert db.execute("SELECT x FROM t").fetchall() == [(want,)], name
        with pytest.raises(sqlite3.OperationalError):
            db.execute("INSERT INTO t VALUES (3)")
        db.close()
    assert readonly_uri(small_disk / "missing.db") is None


def test_disk_a_house_whose_log_refuses_writes_never_acknowledges_a_copy_of_what_it_holds(tmp_path, small_disk):
    """The house's attendance log on a disk that fills up: the scans it cannot store are held,
    unacknowledged, and so is a second delivery of one of them (acknowledging it would leave the held
    copy in memory the only one, lost at a stop). Once the log takes writes again the held scans are
    stored and acknowledged, and a later copy is acknowledged as a plain duplicate."""
    import time

    from gate.bus.codec import pack_scan
    from gate.core.events import ScanEvent
    from gate.house.build import build_house
    from gate.house.intake import Intake
    from tests.conftest import house_config

    cfg = house_config(small_disk, 1)
    house = build_house(cfg)
    now = int(time.time() * 1000)

    def msg(i, mid):
        return ("gate/hall/door-a/scan", pack_scan(ScanEvent(f"door-a-{i}", "door-a", i, now - (10 - i) * 1000, "eve",
                                                             f"T{i}", "in", "admitted", "ok")), mid, 1)
    acked = house.bus.ready_acks   # not connected: acknowledgements wait here, in order
    try:
        house.intake._handle_batch([msg(1, 101)])
        assert list(acked) == [(101, 1)]
        fill(small_disk, "runaway.log")
        house.intake._handle_batch([msg(2, 102), msg(2, 103)])   # refused, and a copy in the same batch
        house.intake._handle_batch([msg(2, 104), msg(1, 105)])   # a copy of the held one; one of the stored
        assert list(acked) == [(101, 1), (105, 1)]
        assert house.intake.ingest.held_ids == {("door-a", "door-a-2")} and house.state.counts.seen == 1
        os.remove(small_disk / "runaway.log")
        house.intake.ingest._retry_at = 0.0   # the intake's next pass tries the held ones again
        Intake._commit(house.intake, house.intake.ingest.retry_due(), [])
        assert house.state.counts.seen == 2 and house.intake.ingest.held_ids == set()
        assert (102, 1) in acked and (103, 1) not in acked and (104, 1) not in acked
        house.intake._handle_batch([msg(2, 106)])   # the broker hands a copy again: now a plain duplicate
        assert (106, 1) in acked and house.state.counts.seen == 2
    finally:
        house.close()
