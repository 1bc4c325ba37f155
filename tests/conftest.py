"""Shared fixtures: a real Mosquitto broker, gpiozero's MockFactory, real configs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gate.bus.broker import PrivateBroker, free_port  # noqa: F401 (free_port is used by the tests)
from gate.config import parse

REPO = Path(__file__).resolve().parent.parent


def wait_for(cond, timeout=10.0, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Broker(PrivateBroker):
    def __init__(self, workdir, acl=""):
        super().__init__(workdir, acl)


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


class Collector:
    """Subscribes to topics on the test broker and keeps what arrives."""

    def __init__(self, port, *topics):
        self.messages = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}")
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic):
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


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
