"""The MQTT client set-up every side shares (gate, house, box office): credentials, TLS, will."""

from __future__ import annotations

import logging
import os
import ssl

import paho.mqtt.client as mqtt

log = logging.getLogger("gate.mqtt")


def read_secret(path: str, env: str) -> str:
    """A secret from the environment or a file (never from the config itself)."""
    if os.environ.get(env):
        return os.environ[env]
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return ""


def make_client(m, client_id: str, *, clean_session: bool = True, will=None,
                manual_ack: bool = False) -> mqtt.Client:
    """A paho 2.x client set up from an [mqtt] section (credentials, TLS, will)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                    protocol=mqtt.MQTTv311, manual_ack=manual_ack)
    if m.username:
        c.username_pw_set(m.username, read_secret(m.password_file, "GATE_MQTT_PASSWORD") or None)
    if m.tls:
        c.tls_set(ca_certs=m.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
    if will:
        c.will_set(*will)
    c.reconnect_delay_set(1, 1)  # a few gates on a LAN: retry every second, back quickly after an outage
    return c


def guarded(fn):
    """paho's network thread dies on an exception in a callback: never let one out."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("error in MQTT callback %s", fn.__name__)
    wrapper.__name__ = fn.__name__
    return wrapper


