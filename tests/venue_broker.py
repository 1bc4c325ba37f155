"""A venue's broker exactly as `gate broker config` writes it, and a raw MQTT v5 client for it that
records the broker's reason codes (test_broker_identity, test_boxoffice_party)."""

import os
import ssl
import time

import paho.mqtt.client as mqtt

from gate.bus.broker import PrivateBroker
from tests.conftest import wait_for


class VenueBroker(PrivateBroker):
    """Mosquitto running the generated gate.conf as it is, plus only where to keep its data."""

    def __init__(self, workdir, conf_dir):
        super().__init__(workdir)
        lines = ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1",
                 f"log_dest file {self.dir}/mosquitto.log", f"include_dir {conf_dir}"]
        if os.geteuid() == 0:
            lines.append("user root")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")


def password(out, user):
    return (out / "users" / f"{user}.password").read_text().strip()


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
