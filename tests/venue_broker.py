"""A venue's broker exactly as `gate broker config` writes it, and the parties on it: each party's
config for it, a raw MQTT v5 client that records the broker's reason codes, and a real `gate scan` fed
by a serial scanner (test_broker_identity, test_standby, test_boxoffice_party, test_identity)."""

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

from gate.bus.broker import PrivateBroker
from gate.config import parse
from tests.conftest import free_port, run_gate_cli, wait_for


class VenueBroker(PrivateBroker):
    """Mosquitto running the generated gate.conf as it is, plus only where to keep its data."""

    def __init__(self, workdir, conf_dir):
        super().__init__(workdir)
        lines = ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1",
                 f"log_dest file {self.dir}/mosquitto.log", f"include_dir {conf_dir}"]
        if os.geteuid() == 0:
            lines.append("user root")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")


def start_venue_broker(tmp_path, gates="door-a,door-b"):
    """`gate broker config` for the venue `hall` (these gates and a `dashboard` user) on a free port, and a
    Mosquitto running what it wrote: (the folder it wrote, the broker). The caller stops the broker."""
    port = free_port()
    out = tmp_path / "broker-conf"
    r = run_gate_cli("broker", "config", "--venue", "hall", "--out", str(out), "--gates", gates,
                     "--dashboards", "dashboard", "--host", "localhost", "--port", str(port), "--bind", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    b = VenueBroker(tmp_path / "broker-data", out)
    b.port = port
    b.start()
    return out, b


def password(out, user):
    return (out / "users" / f"{user}.password").read_text().strip()


def party_mqtt(out, port, user) -> str:
    """A party's [mqtt] section for that broker: TLS with the venue's CA, as `user` with its own password."""
    return (f'[mqtt]\nhost = "localhost"\nport = {port}\ntls = true\nca_file = "{out / "ca.crt"}"\n'
            f'username = "{user}"\npassword_file = "{out / "users" / (user + ".password")}"\nkeepalive = 5\n')


def party_config(tmp_path, out, port, user, section):
    """A party's config file: `section`, then [mqtt] as `user` over TLS with its own password, [storage]."""
    text = section + party_mqtt(out, port, user) + f'[storage]\ndir = "{tmp_path / ("state-" + user)}"\n'
    path = tmp_path / f"{user}.toml"
    path.write_text(text)
    return parse(text, str(path))


class V5:
    """A raw MQTT v5 client that records connack, puback, suback reason codes and messages."""

    def __init__(self, out, port, user, pw=None, client_id="", tls=True):
        self.connack, self.pubacks, self.subacks, self.messages = None, {}, [], []
        self.disconnects = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv5)
        if tls:
            self.c.tls_set(ca_certs=str(out / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        if user is not None:
            self.c.username_pw_set(user, pw if pw is not None else password(out, user))
        self.c.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.extend(rcs)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(rc)
        self.c.connect("localhost", port)
        self.c.loop_start()
        wait_for(lambda: self.connack is not None, what=f"CONNACK for {user}")

    def publish(self, topic, payload, retain=False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        return wait_for(lambda: self.pubacks.get(info.mid), what=f"PUBACK on {topic}")

    def subscribe(self, topic):
        n = len(self.subacks)
        self.c.subscribe(topic, 1)
        return wait_for(lambda: self.subacks[n] if len(self.subacks) > n else None, what=f"SUBACK {topic}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class SerialGate:
    """A real `gate scan` reading codes from a serial scanner (a pseudo-terminal we type codes into): its
    stderr in `log`, the scan events it prints (`--json`) in `events`. `scanning_within`: wait that long
    (seconds) for it to say it scans."""

    def __init__(self, config, scanning_within: float = 0):
        self.master, self.slave = os.openpty()
        self.p = subprocess.Popen([sys.executable, "-m", "gate.cli", "scan", "-c", str(config), "--json",
                                   "--source", f"serial:{os.ttyname(self.slave)}@115200"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, GPIOZERO_PIN_FACTORY="mock"))
        self.events: list[dict] = []
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(iter(self.p.stderr.readline, "")), daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()
        if scanning_within:
            wait_for(lambda: self.said("scanning from serial:"), scanning_within, what="gate scanning")

    def _read(self):
        for line in iter(self.p.stdout.readline, ""):
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def present(self, code, timeout=20):
        """The next scan event for `code`, as the gate published it."""
        n = len(self.events)
        os.write(self.master, code.encode() + b"\r\n")
        return wait_for(lambda: self.events[n] if len(self.events) > n else None, timeout, what=f"a verdict on {code}")

    def said(self, text):
        return [line for line in self.log if text in line]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
