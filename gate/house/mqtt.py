"""The house's MQTT side: one client with a persistent session, and the hand-offs to the intake.

Subscribes with a persistent session (fixed client id, MQTT 3.1.1 with clean_session false,
QoS 1), so the broker keeps what arrives while the house is down. Scan events are
acknowledged to the broker only after they are committed to SQLite (paho's manual ack): a
house killed at any moment loses nothing. paho's network thread only records and hands on:
messages go into `inbox`, acknowledgements due come back through `ready_acks` (deques:
atomic append and popleft, no locks). Acks are sent from the network thread where possible:
from any other thread each one has to wake paho's loop with a syscall.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

from gate import __version__
from gate.bus import topics
from gate.bus.client import guarded, make_client
from gate.bus.limits import Drops
from gate.core.clock import now_ms

log = logging.getLogger(__name__)

MAX_INBOX = 100_000    # unacknowledgeable (QoS 0) messages waiting beyond this are dropped and counted
HA_SENSOR_CONFIGS = "homeassistant/sensor/+/config"
HA_BINARY_CONFIGS = "homeassistant/binary_sensor/+/config"   # the gates' connectivity entities, to remove retired ones
QUIET_ACKS_S = 0.02    # acks waiting this long with no traffic are sent from the intake's thread


class HouseMqtt:
    """The client and its callbacks; `on_online` and `on_ha_config` run on paho's network thread."""

    def __init__(self, mqtt_cfg, venue: str, client_id: str, drops: Drops):
        self.cfg = mqtt_cfg
        self.venue = venue
        self.drops = drops
        self.inbox: deque = deque()        # (topic, payload, mid, qos) for the intake
        self.ready_acks: deque = deque()   # (mid, qos) committed, to acknowledge
        self._acks_since = 0.0
        self.connected = threading.Event()
        self.on_online: Optional[Callable[[], None]] = None                # (re)connected and subscribed
        self.on_ha_config: Optional[Callable[[str, bytes], None]] = None   # a retained sensor config seen
        self.status_extra: Optional[Callable[[], dict]] = None   # what the status says besides online: the venue mode
        # The will carries no ts (the broker sends it when we die; a ts from now would be older
        # than our `online`): receivers use the time they received it.
        will = (topics.house_status(venue), json.dumps({"state": "offline", "version": __version__}), 1, True)
        self.client = make_client(mqtt_cfg, client_id, clean_session=False, manual_ack=True, will=will)
        self.client.on_connect = guarded(self._on_connect)
        self.client.on_disconnect = guarded(self._on_disconnect)
        self.client.on_message = guarded(self._on_message)
        self._started = False

    # -- paho's network thread --------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.report.on_connect(reason_code)   # says why once, if the broker said no
        if reason_code.is_failure:
            return
        log.info("connected (session present: %s)", flags.session_present)
        self.say_online()
        # The whole venue tree, so that malformed topic shapes are seen and counted too; and the
        # retained sensor configs, to remove ours that should no longer exist.
        client.subscribe([(topics.venue_all(self.venue), 1), (HA_SENSOR_CONFIGS, 0), (HA_BINARY_CONFIGS, 0)])
        if self.on_online is not None:
            self.on_online()
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        client.report.on_disconnect(reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self.flush_acks()
        if msg.topic.startswith("homeassistant/"):   # subscribed at QoS 0: nothing to acknowledge
            if self.on_ha_config is not None:
                self.on_ha_config(msg.topic, msg.payload)
            return
        if msg.qos == 0 and len(self.inbox) > MAX_INBOX:
            # QoS 1 deliveries are bounded by the broker (they wait for our acks); QoS 0 ones are not.
            return self.drops.add("house_busy", msg.topic)
        self.inbox.append((msg.topic, msg.payload, msg.mid, msg.qos))

    # -- any thread ------------------------------------------------------------------
    def say_online(self) -> None:
        """The retained house status: online, with the venue mode and the signed time of the control
        message that set it (`status_extra`): the box office's `gate venue` waits to see them."""
        extra = self.status_extra() if self.status_extra is not None else {}
        self.client.publish(topics.house_status(self.venue), json.dumps(
            {"state": "online", "version": __version__, "ts": now_ms(), **extra}), qos=1, retain=True)

    def flush_acks(self) -> None:
        """Acknowledge to the broker what is committed (from whichever thread gets here first)."""
        while True:
            try:
                mid, qos = self.ready_acks.popleft()
            except IndexError:
                return
            self.client.ack(mid, qos)

    def acks_due(self, acks: list) -> None:
        """These messages are on disk now: acknowledge them."""
        self.ready_acks.extend(acks)
        self._acks_since = time.monotonic()

    def flush_if_quiet(self) -> None:
        """Traffic paused: nobody else will send the acks waiting."""
        if self.ready_acks and time.monotonic() - self._acks_since > QUIET_ACKS_S:
            self.flush_acks()

    def publish(self, topic: str, payload, retain: bool = False):
        """QoS 1; paho only queues it (never blocks on the network)."""
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def inject(self, topic: str, payload: bytes) -> None:
        """A message the house makes for itself (a pretix check-in), taken in like one from the bus."""
        self.inbox.append((topic, payload, 0, 0))

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()

    def say_offline(self) -> None:
        """A clean stop says so (the will is for a crash)."""
        if not self.connected.is_set():
            return
        try:
            self.publish(topics.house_status(self.venue), json.dumps(
                {"state": "offline", "version": __version__, "ts": now_ms()}), retain=True
            ).wait_for_publish(timeout=1)
        except (RuntimeError, ValueError):
            pass

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self.client.disconnect()
        self.client.loop_stop()
