"""The loop, end to end on one machine: in-memory camera, real decoder,
real SQLite store and outbox, gpiozero's MockFactory."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource, Source
from gate.core.events import Frame
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import gate_config, wait_for

R, G, B, BUZ, RELAY = 17, 27, 22, 23, 24
RNG = np.random.default_rng(11)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def frames_for(*codes, hold=3, gap=3):
    out = []
    for c in codes:
        out += [EMPTY] * gap + [compose(c, "clean", rng=RNG)] * hold
    return out + [EMPTY] * gap


def scanner(tmp_path, mock_factory, tickets_csv, frames, fps=0, welcomes=None, **kw):
    cfg = gate_config(tmp_path, **kw)
    store = TicketStore(cfg.storage.dir + "/tickets.db")
    store.replace_all(read_ticket_file(tickets_csv))
    store.close()
    verdicts = []
    s = Scanner(cfg, MemorySource(frames, fps), pin_factory=mock_factory, connect=False,
                on_verdict=lambda v, w, e: (verdicts.append((v, e)), welcomes is not None and welcomes.append(w)))
    return s, verdicts


def test_scan_loop_gives_each_presented_ticket_one_verdict(tmp_path, mock_factory, tickets_csv):
    welcomes = []
    s, verdicts = scanner(tmp_path, mock_factory, tickets_csv,
                          frames_for("CODE-0001", "CODE-0002", "CODE-0003", "CODE-0004", "CODE-0005",
                                     "CODE-0006", "CODE-0007", "NOT-A-TICKET"),
                          zones='["stalls"]', debounce=0.5, welcomes=welcomes)
    assert s.run() == 0
    got = [(v.result, v.reason, e.ticket) for v, e in verdicts]
    assert got[:7] == [("admitted", "ok", "T1"), ("admitted", "ok", "T2"), ("rejected", "wrong_event", "T3"),
                       ("rejected", "revoked", "T4"), ("rejected", "wrong_gate", "T5"),
                       ("rejected", "not_yet_valid", "T6"), ("rejected", "expired", "T7")]
    assert got[7][1] == "unknown" and got[7][2].startswith("h:") and "NOT-A-TICKET" not in got[7][2]
    assert [e.seq for _, e in verdicts] == list(range(1, 9))
    e1 = verdicts[0][1]
    assert e1.attention == ["member"] and welcomes[0].greeting == "Welcome back, Ada!"
    assert verdicts[1][1].attention == ["wheelchair"] and welcomes[1].level == "assist"


def test_scan_same_ticket_again_is_already_used(tmp_path, mock_factory, tickets_csv):
    frames = frames_for("CODE-0001") + [EMPTY] * 40 + frames_for("CODE-0001")
    s, verdicts = scanner(tmp_path, mock_factory, tickets_csv, frames, fps=60, debounce=0.3)
    s.run()
    assert [v.reason for v, _ in verdicts] == ["ok", "already_used"]
    assert "door-a" in verdicts[1][0].detail


@pytest.mark.slow
def test_scan_minutes_of_empty_frames(tmp_path, mock_factory, tickets_csv):
    n = 30 * 180  # three minutes at 30 fps
    s, verdicts = scanner(tmp_path, mock_factory, tickets_csv, [EMPTY] * n)
    t0 = time.monotonic()
    assert s.run() == 0
    assert verdicts == [] and s.processed == n
    assert time.monotonic() - t0 < 60


def test_scan_garbage_codes_are_rejected_and_counted(tmp_path, mock_factory, tickets_csv):
    binary = bytes(range(0, 256, 3))
    frames = []
    for payload in (binary, "X" * 1500, "TICKET\x07\x1b[2J"):
        size = (1024, 1024) if isinstance(payload, str) and len(payload) > 1000 else (640, 480)
        frames += [EMPTY] * 2 + [compose(payload, "clean", size=size, rng=RNG, module_px=3)] * 6
    s, verdicts = scanner(tmp_path, mock_factory, tickets_csv, frames)
    s.cfg.decode.max_payload = s.parts.resolver.max_payload = 1024
    assert s.run() == 0
    assert [v.reason for v, _ in verdicts] == ["unknown"] * 3
    r = s.parts.resolver.rejects
    assert (r.binary, r.oversized, r.control) == (1, 1, 1)


def test_scan_led_before_disk_before_relay(tmp_path, mock_factory, tickets_csv):
    s, verdicts = scanner(tmp_path, mock_factory, tickets_csv, frames_for("CODE-0001"), fps=30)
    done = {}
    real_append = s.outbox.append

    def timed_append(*a, **kw):
        e = real_append(*a, **kw)
        done["outbox"] = time.monotonic()
        return e
    s.outbox.append = timed_append
    led, relay = mock_factory.pin(G), mock_factory.pin(RELAY)

    def relay_rose():
        return relay.state == 1 and relay._last_change
    import threading
    th = threading.Thread(target=s.run)
    th.start()
    rise = wait_for(relay_rose, 10, 0.001, "relay pulse")
    led_on = led._last_change
    th.join()
    assert led_on <= done["outbox"] <= rise
    assert relay.state == 0
    assert 0.19 < relay.states[-1].timestamp < 0.5  # the pulse length: never shorter, at most 0.3 s late


class StallingSource(Source):
    """Delivers frames, then none at all until restarted (a camera that hangs)."""

    def __init__(self, frame, good=10):
        self.frame, self.good, self.starts, self.n = frame, good, 0, 0

    def start(self):
        self.starts += 1
        self.n = 0

    def read(self, timeout):
        self.n += 1
        if self.starts == 1 and self.n > self.good:
            time.sleep(timeout)
            return None
        time.sleep(0.01)
        return Frame(y=self.frame, seq=self.n, t_arrival=time.monotonic())


def test_scan_camera_that_stops_is_reported_and_restarted(tmp_path, mock_factory, tickets_csv):
    cfg = gate_config(tmp_path, stall=0.5)
    src = StallingSource(EMPTY)
    s = Scanner(cfg, src, pin_factory=mock_factory, connect=False)
    import threading
    th = threading.Thread(target=s.run)
    th.start()
    try:
        wait_for(lambda: src.starts == 2, 10, what="camera restart")
        wait_for(lambda: s.camera_ok and s.processed > 15, 10, what="frames again")
        assert s.health()["camera_ok"] is True
    finally:
        s.stop.set()
        th.join(5)
    assert not th.is_alive()


def test_scan_camera_lost_shows_fault_and_health(tmp_path, mock_factory, tickets_csv):
    cfg = gate_config(tmp_path, stall=0.3)

    class Dead(StallingSource):
        def start(self):
            self.starts += 1
            if self.starts > 1:
                from gate.core.errors import CameraError
                raise CameraError("camera did not start")

        def read(self, timeout):
            if self.starts > 1:
                time.sleep(timeout)
                return None
            return super().read(timeout)
    s = Scanner(cfg, Dead(EMPTY, good=3), pin_factory=mock_factory, connect=False)
    import threading
    th = threading.Thread(target=s.run)
    th.start()
    try:
        wait_for(lambda: not s.camera_ok and s.fault == "camera", 10, what="camera fault")
        h = s.health()
        assert h["camera_ok"] is False and "camera did not start" in h["camera_error"]
        wait_for(lambda: mock_factory.pin(R).state == 1, 5, what="red fault blink")
    finally:
        s.stop.set()
        th.join(5)
    assert mock_factory.pin(RELAY).state == 0


@pytest.mark.slow
def test_scan_sigterm_stops_cleanly(tmp_path, tickets_csv):
    from PIL import Image
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(200):
        Image.fromarray(EMPTY).save(frames / f"{i:04d}.png")
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\nevents=["eve"]\n[feedback]\nrelay=24\n'
                   f'[storage]\ndir="{tmp_path}/s"\n[mqtt]\nenabled=false\n')
    import os
    p = subprocess.Popen([sys.executable, "-m", "gate.cli", "scan", "-c", str(cfg), "--source",
                          f"replay:{frames}@10"], env=dict(os.environ, GPIOZERO_PIN_FACTORY="mock"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:          # start-up can be slow (emulated arm64): wait until it scans
        if "scanning from" in line:
            break
    p.send_signal(signal.SIGTERM)  # (its handler was set before start-up)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "stopping (signal 15)" in err


def test_scan_symbols_that_keep_failing_ask_the_camera_to_refocus(tmp_path, mock_factory, tickets_csv):
    """Bars seen frame after frame but too blurred to read (a stuck focus):
    the loop asks the source for a focus scan. Frames come as (lores, main)
    pairs, as from a Pi."""
    from gate.sim import scenes
    pres = scenes.present("c128_slant", "T-000001-00000001", np.random.default_rng(7))
    pres.params["blur"] = 2.6
    frames = [(f, f) for f in (pres.frame(i) for i in range(40))]   # (lores, main) at one scale

    class Focusable(MemorySource):
        refocused = 0

        def refocus(self):
            Focusable.refocused += 1
            return True

    cfg = gate_config(tmp_path)
    store = TicketStore(cfg.storage.dir + "/tickets.db")
    store.replace_all(read_ticket_file(tickets_csv))
    store.close()
    s = Scanner(cfg, Focusable(frames, 0), pin_factory=mock_factory, connect=False)
    assert s.run() == 0
    assert Focusable.refocused >= 1 and s.parts.decoder.stats.retries >= 8


def test_scan_parts_close_goes_on_past_a_part_that_fails_to_close(tmp_path, mock_factory, caplog):
    """The camera raises as it is closed (gate/core/teardown.py): logged, and the relay is off and the
    databases closed all the same."""
    import logging
    import sqlite3

    from gate.build import build_gate

    class Stuck(MemorySource):
        def close(self):
            raise OSError("the camera did not let go")

    parts = build_gate(gate_config(tmp_path), Stuck([]), pin_factory=mock_factory, connect=False)
    parts.feedback.release.hold()
    assert mock_factory.pin(RELAY).state == 1
    with caplog.at_level(logging.ERROR, logger="gate.build"):
        parts.close()
    assert mock_factory.pin(RELAY).state == 0
    assert "closing the source" in caplog.text and "the camera did not let go" in caplog.text
    for db in (parts.store.db, parts.outbox.db):
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")
