"""A full disk under the gate's storage, on a real small tmpfs: the reserve keeps scans
recorded, a truly full disk keeps the turnstile shut (no release without a durable
record) while verdicts go on, and a restart on a full disk still comes up."""

from __future__ import annotations

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
