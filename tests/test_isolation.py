"""The scan loop is isolated from the bus: while another party floods and bombs the broker,
real frames of rendered tickets go through the real loop (real decoder, SQLite, gpiozero's
MockFactory, a real Mosquitto) and every presented ticket gets its verdict, with the relay
pulse within its configured length ± 50 ms. (The house under the same attacks, counting exactly:
tests/test_receivers.py.)

As on a venue LAN, the attacker is another process: what the gate's process does with the
flood is what is measured."""

import json
import os
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.bus import messages
from gate.bus.codec import pack_scan
from gate.camera import MemorySource
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.remote import REMOTE_BACKLOG
from gate.state.tickets import TicketStore
from tests.conftest import REPO, gate_config, scan_event, wait_for

pytestmark = pytest.mark.slow   # a flood from another process for as long as the scan runs

RELAY = 24
RNG = np.random.default_rng(21)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))
PRESENTED = ["CODE-0001", "CODE-0002", "CODE-0003", "CODE-0004", "CODE-0005", "CODE-0006", "CODE-0007", "NOPE-1"]
EXPECTED = ["ok", "ok", "wrong_event", "revoked", "ok", "not_yet_valid", "expired", "unknown"]


FORGED_PER_10MS = 50   # ~5,000 forged admissions a second, 200 times a busy venue's real scan traffic


def flood(port: int, seconds: float) -> None:
    """Forged admissions from a fake gate, resend storms at door-a, junk and bombs (run as a process).

    The rate is what the test machine, shared and loaded, gives headroom for; the issue's own
    figure (100,000 in 4 s) is replayed by bench/bench_attacks.py, which reports the frame gaps."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker")
    c.max_queued_messages_set(5000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    now = int(time.time() * 1000)
    bombs = [b"\xc1", b"\x91" * 4000, b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
             msgpack.packb({**msgpack.unpackb(pack_scan(scan_event("B", gate="door-x"))), "ts": 2**64 - 1}),
             msgpack.packb({**msgpack.unpackb(pack_scan(scan_event("B", gate="door-x"))), "event": "Hamlet #2"})]
    i, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(FORGED_PER_10MS):
            # An open test broker cannot tell these from a real door-x (the ACL of `gate broker config`
            # can): they are for another performance, so tonight's count stays checkable.
            e = scan_event(f"FORGED-{i}", gate="door-x", id=f"forged-{i}", ts=now)
            e.event = "matinee"
            c.publish("gate/hall/door-x/scan", pack_scan(e), qos=0)
            i += 1
        for b in bombs:
            c.publish("gate/hall/door-x/scan", b, qos=0)
        c.publish("gate/hall/door-a/resend", messages.pack_resend(range(1, 501)), qos=0)
        c.publish("gate/hall/door-a/resend", b'{"seqs": [' + b"1," * 5000 + b"1]}", qos=0)
        c.publish("gate/hall/door-a/scan", b"\x00" * 5000, qos=0)   # a forgery on the gate's own topic
        c.publish("gate/hall/door-b/health", json.dumps({"fps": 1e308, "x": [[[]]]}), qos=0)
        print(i, flush=True)
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()


def test_isolation_scan_loop_gives_verdicts_and_exact_pulses_under_a_bus_flood(tmp_path, broker, mock_factory,
                                                                              tickets_csv):
    """Timing on a shared, overloaded 2-core test machine is noisy even with a quiet bus (a woken thread
    can wait tens of ms for a core): the whole scenario gets one more try on fresh state. A gate that
    stalls under the flood fails both; a passing run is a full pass of every assertion. Where the machine
    is so loaded that ±50 ms cannot be judged at all, the test says so and skips (`make test-isolation`
    runs it whatever the load)."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > 4 and not os.environ.get("GATE_TIMING_ANY_LOAD"):
        pytest.skip(f"load average {load:.1f} per core: relay timing to ±50 ms cannot be judged here")
    try:
        _scenario(tmp_path / "try1", broker, mock_factory, tickets_csv)
    except AssertionError as first:
        print(f"first try failed ({first}); once more on fresh state")
        mock_factory.reset()
        _scenario(tmp_path / "try2", broker, mock_factory, tickets_csv)


def _scenario(tmp_path, broker, mock_factory, tickets_csv):
    tmp_path.mkdir()
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONPATH=str(REPO))
    cfg = gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True)
    cfg.turnstile.assist_tags = []   # every release here is the ordinary 200 ms pulse (T2 is a wheelchair user)
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    flooding = threading.Event()
    shown = {}

    def frames():
        while not flooding.is_set():
            yield EMPTY
        for _ in range(30):   # a second of flood before the first ticket
            yield EMPTY
        for code in PRESENTED:
            shown[code] = time.monotonic()
            for _ in range(6):
                yield compose(code, "clean", rng=RNG)
            for _ in range(12):
                yield EMPTY
    verdicts = []
    s = Scanner(cfg, MemorySource(frames(), 30), pin_factory=mock_factory,
                on_verdict=lambda v, w, e: verdicts.append((time.monotonic(), v, e)))
    th = threading.Thread(target=s.run)
    attacker = None
    try:
        th.start()
        wait_for(lambda: s.link is not None and s.link.connected.is_set(), what="door-a connected")
        attacker = subprocess.Popen([sys.executable, "-c", f"from tests.test_isolation import flood; "
                                     f"flood({broker.port}, 30)"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                    text=True)
        wait_for(lambda: int(attacker.stdout.readline() or 0) >= 20 * FORGED_PER_10MS, what="the flood under way")
        flooding.set()
        th.join(60)
        assert not th.is_alive()
        assert attacker.poll() is None, "the flood lasted the whole scan"
        attacker.kill()
        own = [(t, v, e) for t, v, e in verdicts if e.gate == "door-a" and v.result != "annulled"]
        assert [v.reason for _, v, _ in own] == EXPECTED
        for (t, v, e), code in zip(own, PRESENTED):   # each verdict came while its ticket was still in view
            assert t - shown[code] < 2.0, (code, t - shown[code])
        relay = mock_factory.pin(RELAY)
        pulses = [st.timestamp for prev, st in zip(relay.states, relay.states[1:]) if prev.state and not st.state]
        assert len(pulses) == EXPECTED.count("ok")
        assert all(abs(p - 0.2) <= 0.05 for p in pulses), pulses
        # The flood reached the gate and was dropped and counted rather than queued for the loop.
        drops = {**s.link.drops.snapshot(), **s.parts.remote.drops}   # what the gate's health reports
        assert drops.get("remote_rate", 0) > 0 and drops.get("bad_msgpack", 0) > 0 and drops.get("bad_ts", 0) > 0
        assert drops.get("bad_resend", 0) > 0 and len(s.parts.remote.backlog) <= REMOTE_BACKLOG
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait()
        s.stop.set()
        if th.ident:
            th.join(10)
