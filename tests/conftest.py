"""Shared fixtures and helpers: a real Mosquitto broker, a real house, gpiozero's MockFactory, real configs.

Every test file takes its fixtures and shared helpers from here (or from the helper modules beside it:
waits.py, pretix_codes.py); no test file imports another."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate.bus.broker import PrivateBroker, mosquitto_binary
from gate.config import parse

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes many seconds (real pretix, floods, crowds); "
                                       "left to `./run test-slow` (make test-slow); `./run test` runs the rest")


def wait_for(cond, timeout=10.0, step=0.02, what="condition"):
    """Poll `cond` until it returns something true and return that; fail, naming `what` (a callable is
    called then, to say how far things got), after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {said} (last seen: {v!r})")
        time.sleep(step)


# -- ports ------------------------------------------------------------------------------------------
def free_port() -> int:
    """A port nothing listens on, from below the kernel's ephemeral range (32768 up): a port handed out
    for port 0 can be taken by any outgoing connection before our server binds it; these cannot."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Broker(PrivateBroker):
    """The project's own private Mosquitto config; started only once the broker itself answers. A port
    another process took meanwhile means a fresh port at first start (a restart keeps its port)."""

    def __init__(self, workdir, acl=""):
        super().__init__(workdir, acl, port=free_port())
        self.acl, self.started = acl, False

    def start(self) -> "Broker":
        for _ in range(5):
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.dir / "mosquitto.conf")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._answering(10.0):
                self.started = True
                return self
            self.stop(signal.SIGKILL)
            if self.started:
                break
            PrivateBroker.__init__(self, self.dir, self.acl, port=free_port())   # writes the config anew
        raise RuntimeError(f"mosquitto did not start on port {self.port}; see {self.dir / 'mosquitto.log'}")

    def _answering(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.proc.poll() is None   # it, not a stranger on the port, is listening
            except OSError:
                time.sleep(0.02)
        return False


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path):
    made = []

    def make(acl=""):
        b = Broker(tmp_path / f"broker{len(made)}", acl)
        b.start()
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


@pytest.fixture
def mock_factory():
    """gpiozero's own mock pins (PWM-capable, for tonal buzzers)."""
    f = MockFactory(pin_class=MockPWMPin)
    old = Device.pin_factory
    Device.pin_factory = f
    yield f
    f.reset()
    Device.pin_factory = old


# -- configs ----------------------------------------------------------------------------------------
GATE_TOML = """
[gate]
id = "{gate}"
venue = "hall"
profile = "{profile}"
events = ["eve"]
zones = {zones}
reentry = {reentry}
direction = "{direction}"
{gate_extra}

[camera]
source = "replay:none"
stall_s = {stall}

[decode]
debounce_s = {debounce}

[feedback]
led_red = 17
led_green = 27
led_blue = 22
buzzer = 23
relay = 24
display = "{display}"

[turnstile]
relay_mode = "{relay_mode}"
pulse_ms = 200
{passage}
passage_timeout_s = {passage_timeout}

[handheld]
trigger_pin = 16
linger_s = 0.3

[hospitality.tags.member]
level = "greet"
greeting = "Welcome back, {{first}}!"

[hospitality.tags.wheelchair]
level = "assist"
greeting = "Wheelchair space {{seat}}"

[mqtt]
host = "127.0.0.1"
port = {port}
enabled = {mqtt}
keepalive = 5

[storage]
dir = "{storage}"

[signing]
ticket_keys = {keys}
list_keys = {list_keys}
{venue_secret}
"""


def gate_config(tmp_path, gate="door-a", profile="turnstile", zones="[]", reentry=False, direction="in",
                port=1883, mqtt_on=False, passage="", passage_timeout=5.0, relay_mode="pulse",
                display="none", keys="[]", stall=2.0, debounce=2.0, storage=None, venue=None, gate_extra=""):
    text = GATE_TOML.format(gate=gate, profile=profile, zones=zones, reentry=str(reentry).lower(),
                            direction=direction, port=port, mqtt=str(mqtt_on).lower(), passage=passage,
                            passage_timeout=passage_timeout, relay_mode=relay_mode, display=display,
                            keys=keys, stall=stall, debounce=debounce, gate_extra=gate_extra,
                            list_keys=f'["{venue.pub_path}"]' if venue else "[]",
                            venue_secret=f'venue_secret = "{venue.secret_path}"' if venue else "",
                            storage=storage or (tmp_path / f"state-{gate}"))
    path = tmp_path / f"{gate}.toml"
    path.write_text(text)
    return parse(text, str(path))


def house_config(tmp_path, port, name="house", signing=""):
    listen = f"127.0.0.1:{free_port()}"
    text = (f'[house]\nvenue = "hall"\nlisten = "{listen}"\ncapacity = {{ "eve" = 100 }}\n'
            f'client_id = "house-hall"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 5\n'
            f'[storage]\ndir = "{tmp_path}/{name}"\n{signing}')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return parse(text, str(path))


TICKETS_CSV = """ticket_id,code,event,holder,seat,zone,tags,status,valid_from,valid_until
T1,CODE-0001,eve,Ada Lovelace,B12,stalls,member,valid,,
T2,CODE-0002,eve,Alan Turing,C3,stalls,wheelchair,valid,,
T3,CODE-0003,other,Grace Hopper,D1,stalls,,valid,,
T4,CODE-0004,eve,Revoked Person,D2,stalls,,revoked,,
T5,CODE-0005,eve,Balcony Person,E1,balcony,,valid,,
T6,CODE-0006,eve,Early Bird,E2,stalls,,valid,2099-01-01T00:00:00+00:00,
T7,CODE-0007,eve,Late Comer,E3,stalls,,valid,,2000-01-01T00:00:00+00:00
"""


class VenueKeys:
    """A box office's list signing key pair and the venue secret, as files and loaded."""

    def __init__(self, directory):
        from gate.boxoffice.keys import load_private_key, load_secret, new_keypair, new_secret
        self.key_path, self.pub_path = new_keypair(directory, "boxoffice")
        self.secret_path = new_secret(directory, "venue")
        self.key, self.secret = load_private_key(self.key_path), load_secret(self.secret_path)

    def pack(self, tickets, revoked=(), *, seq, series="boxoffice-test", issued_ms=None, venue="hall", key=None,
             staff_revoked=()):
        from gate.boxoffice.lists import pack_list
        return pack_list(tickets, revoked, signing_key=key or self.key, secret=self.secret, venue=venue,
                         series=series, seq=seq, issued_ms=issued_ms, staff_revoked=staff_revoked)

    def signing_toml(self, publisher=False) -> str:
        own = f'list_signing_key = "{self.key_path}"\n' if publisher else f'list_keys = ["{self.pub_path}"]\n'
        return f'[signing]\n{own}venue_secret = "{self.secret_path}"\n'


@pytest.fixture
def venue_keys(tmp_path):
    return VenueKeys(tmp_path / "keys")


@pytest.fixture
def tickets_csv(tmp_path):
    p = tmp_path / "tickets.csv"
    p.write_text(TICKETS_CSV)
    return p


# -- the house ----------------------------------------------------------------------------------------
@pytest.fixture
def house(tmp_path, broker):
    """A real house service on the test broker, connected."""
    from gate.house.build import build_house
    svc = build_house(house_config(tmp_path, broker.port))
    svc.start()
    wait_for(svc.connected.is_set, what="house connected")
    yield svc
    svc.close()


def wait_house_active(svc, timeout=20):
    """Until the house has won its election and is back on the broker with its last will: a house that
    wins reconnects once (gate/house/standby.py), so `connected` alone can still flicker after it is set."""
    wait_for(lambda: (svc.standby is None or svc.standby.active()) and svc.bus.has_will and svc.connected.is_set(),
             timeout, what="the house active, reconnected with its will")


def api(cfg):
    """The house's /api/house, over HTTP."""
    with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house", timeout=5) as r:
        return json.load(r)


def api_up(cfg) -> bool:
    try:
        api(cfg)
        return True
    except OSError:
        return False


def eve(h):
    """The `eve` performance's numbers in an /api/house answer (zeros before its first scan)."""
    return next((e for e in h["events"] if e["event"] == "eve"), {"admitted": 0, "inside": 0, "rejected": 0})


# -- the bus ----------------------------------------------------------------------------------------
class Collector:
    """Subscribes to topics on the test broker and keeps what arrives; subscribed once made."""

    def __init__(self, port, *topics):
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}")
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        # A message published before the broker has the subscription would never arrive here.
        wait_for(self.subscribed.is_set, what=f"the broker's SUBACK for {topics}")

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic):
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def publish_raw(port, topic, payloads, client_id="raw", retain=False):
    """Publish at QoS 1 as a client of our own and return once the broker has acknowledged each."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=1, retain=retain) for p in payloads]
    for i in infos:
        i.wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def publish_retained(port, topic, payload, client_id="box-office-test"):
    publish_raw(port, topic, [payload], client_id, retain=True)


def scan_event(ticket, gate="door-a", ts=None, id=None, **kw):
    from gate.core.events import ScanEvent
    return ScanEvent(id=id or f"{gate}-{ticket}-{random.random()}", gate=gate, seq=1, ts=ts or int(time.time() * 1000),
                     event="eve", ticket=ticket, dir="in", result="admitted", reason="ok", **kw)


def start_link(tmp_path, gate, port):
    """A real gate outbox and MQTT link, connected."""
    from gate.link import GateLink
    from gate.state.outbox import Outbox
    cfg = gate_config(tmp_path, gate=gate, port=port, mqtt_on=True)
    path = tmp_path / f"state-{gate}" / "outbox.db"
    outbox = Outbox(path)
    link = GateLink(cfg, path, profile="turnstile")
    link.start()
    wait_for(link.connected.is_set, what=f"{gate} connected")
    return outbox, link


def run_scanner(cfg, frames, mock_factory, tickets_csv=None, fps=30):
    """A real scanner on its own thread, reading `frames`; the tickets imported first when given."""
    from gate.boxoffice.ticketfile import read_ticket_file
    from gate.camera import MemorySource
    from gate.scanner import Scanner
    from gate.state.tickets import TicketStore
    if tickets_csv:
        st = TicketStore(cfg.storage.dir + "/tickets.db")
        st.replace_all(read_ticket_file(tickets_csv))
        st.close()
    s = Scanner(cfg, MemorySource(frames, fps), pin_factory=mock_factory)
    th = threading.Thread(target=s.run)
    th.start()
    return s, th


def run_gate_cli(*args, env=None, timeout=60, **kw):
    e = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "gate.cli", *args], capture_output=True, text=True,
                          env=e, timeout=timeout, **kw)


def boxoffice_config(tmp_path, port, signing="", name="boxoffice", wait_s=10):
    """The box office's own config file (gate/config/boxoffice.py) for the test broker; returns its path."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[boxoffice]\nvenue = "hall"\nwait_s = {wait_s}\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                    f'keepalive = 5\n[storage]\ndir = "{tmp_path / (name + "-state")}"\n{signing}')
    return path
