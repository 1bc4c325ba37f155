"""[mqtt]: the broker a gate or the house talks to, and the credentials it talks with."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gate.bus.tls import ca_file_problem
from gate.config.rules import Fail, check_ranges, is_host, ranged, secret_file_problem


@dataclass
class MqttSection:
    host: str = "localhost"
    port: int = ranged(1883, 1, 65535)
    keepalive: int = ranged(15, 5, 3600, " s")
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password_file: str = ""          # or the environment variable GATE_MQTT_PASSWORD
    enabled: bool = True


def check(cfg, fail: Fail) -> None:
    """Broker address, ranges, TLS and the password file, when MQTT is on."""
    m = cfg.mqtt
    if not m.enabled:
        return
    if not is_host(m.host):
        fail("mqtt.host", f"{m.host!r} is neither an IP address nor a host name")
    check_ranges(m, "mqtt", fail)
    if m.ca_file and not m.tls:
        fail("mqtt.ca_file", "set, but tls = false: the connection would not be encrypted (set tls = true)")
    if m.tls and m.ca_file:
        problem = ca_file_problem(m.ca_file)
        if problem:
            fail("mqtt.ca_file", problem)
    if m.password_file and not m.username:
        fail("mqtt.password_file", "set, but no mqtt.username: the password would never be sent")
    if m.password_file and not os.environ.get("GATE_MQTT_PASSWORD"):
        problem = secret_file_problem(m.password_file)
        if problem:
            fail("mqtt.password_file", problem)


def warnings(cfg) -> list[str]:
    """A gate whose broker user is not its id (a broker set up by `gate broker config` drops its scans)."""
    if cfg.gate is not None and cfg.mqtt.username and cfg.mqtt.username != cfg.gate.id:
        # The broker configuration `gate broker config` writes lets user X publish only as gate X; under
        # MQTT 3.1.1 a refused publish is acknowledged all the same, so the gate's scans would vanish.
        return [f"mqtt.username = {cfg.mqtt.username!r} is not gate.id {cfg.gate.id!r}: a broker set up by "
                "`gate broker config` lets each gate publish only under its own id as user name"]
    return []
