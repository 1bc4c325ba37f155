"""The house's MQTT side: one client with a persistent session, and the hand-offs to the intake.

Subscribes with a persistent session (fixed client id, MQTT 3.1.1 with clean_session false,
QoS 1), so the broker keeps what arrives while the house is down. Scan events are
acknowledged to the broker only after they are committed to SQLite (paho's manual ack): a
house killed at any moment loses nothing. paho's network thread only records and hands on:
messages go into `inbox`, acknowledgements due come back through `ready_acks` (deques:
atomic append and popleft, no locks). A committed batch's acks go out together, as one write
(gate/bus/client.py `ack_many`), from whichever thread gets to them first: the intake's right
after the commit, or the network thread as the next message comes in.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

import paho.mqtt.client as mqtt

from gate import __version__
from gate.bus import topics
from gate.bus.client import guarded, make_client
from gate.bus.limits import Drops
from gate.core.clock import now_ms

log = logging.getLogger(__name__)

MAX_INBOX = 100_000    # unacknowledgeable (QoS 0) messages waiting beyond this are dropped and counted
HA_SENSOR_CONFIGS = "homeassistant/sensor/+/config"
HA_BINARY_CONFIGS = "homeassistant/binary_sensor/+/config"   # the gates' connectivity entities, to remove retired ones
MID_BITS = 16          # an ack token: the message's mid, with its broker session above these bits
MID_MASK = (1 << MID_BITS) - 1
QUIET_ACKS_S = 0.02    # acks held while the connection was down are tried again this long after


class HouseMqtt:
    """The client and its callbacks; `on_online` and `on_ha_config` run on paho's network thread."""

    def __init__(self, mqtt_cfg, venue: str, client_id: str, drops: Drops, will: bool = True):
        self.cfg = mqtt_cfg
        self.venue = venue
        self.drops = drops
        self.inbox: deque = deque()        # (topic, payload, ack token, qos) for the intake
        self.ready_acks: deque = deque()   # (ack token, qos) committed, to acknowledge
        # A message's ack token is its mid plus the broker session it came in (`epoch` << MID_BITS): the acks of
        # messages from a session the broker no longer has are dropped, never sent under a new session,
        # where the same mid names another message that may not be on disk yet.
        self.epoch = 0
        self._acks_since = 0.0
        self.connected = threading.Event()
        self.on_online: Optional[Callable[[], None]] = None                # (re)connected and subscribed
        self.on_ha_config: Optional[Callable[[str, bytes], None]] = None   # a retained sensor config seen
        self.status_extra: Optional[Callable[[], dict]] = None   # what the status says besides online: the venue mode
        # The will carries no ts (the broker sends it when we die; a ts from now would be older
        # than our `online`): receivers use the time they received it.
        self.will = (topics.house_status(venue), json.dumps({"state": "offline", "version": __version__}), 1, True)
        self.has_will = will   # only the active house's connection carries it (gate/house/standby.py)
        self.client = make_client(mqtt_cfg, client_id, clean_session=False, manual_ack=True,
                                  will=self.will if will else None)
        # Every publish through this client, whoever makes it (counts, status, discovery, alerts, resend
        # requests, ticket lists), passes `publishing`: a standby house publishes nothing; its claim goes
        # out through `raw_publish` (gate/house/standby.py). Retained ones are told to `on_retained`.
        self.publishing: Callable[[], bool] = lambda: True
        self.on_retained: Optional[Callable[[str, object], None]] = None
        self.on_house_message: Optional[Callable[[str, bytes, bool], None]] = None   # claims and the status
        self.raw_publish = self.client.publish
        self.client.publish = self._publish_if_publishing   # type: ignore[method-assign]
        self.published = self.held_back = 0   # through the gate, and stopped at it (for /api/house)
        self._house = topics.house_prefix(venue)
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
        if not flags.session_present:
            self.epoch += 1   # before connected is set: no ack of the old session goes out on this one
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
        if self.ready_acks:
            self.flush_acks()
        topic = msg.topic   # paho decodes it at each look
        if topic.startswith(self._house) and (msg.qos == 0 or not msg.retain):
            # The house topics are subscribed at QoS 0 as well: claims and wills arrive at once, never queued
            # behind scans waiting for our acks. The retained QoS 1 copies (read back late) go to the intake,
            # which only acknowledges them.
            if self.on_house_message is not None:
                self.on_house_message(topic, msg.payload, bool(msg.retain))
            if msg.qos == 0:
                return
        if topic.startswith("homeassistant/"):   # subscribed at QoS 0: nothing to acknowledge
            if self.on_ha_config is not None:
                self.on_ha_config(topic, msg.payload)
            return
        if msg.qos == 0 and len(self.inbox) > MAX_INBOX:
            # QoS 1 deliveries are bounded by the broker (they wait for our acks); QoS 0 ones are not.
            return self.drops.add("house_busy", topic)
        self.inbox.append((topic, msg.payload, msg.mid | (self.epoch << MID_BITS), msg.qos))

    # -- any thread ------------------------------------------------------------------
    def say_online(self) -> None:
        """The retained house status: online, with the venue mode and the signed time of the control
        message that set it (`status_extra`): the box office's `gate venue` waits to see them. A standby's
        is held back by the gate (only the active house speaks for the house)."""
        extra = self.status_extra() if self.status_extra is not None else {}
        self.client.publish(topics.house_status(self.venue), json.dumps(
            {"state": "online", "version": __version__, "ts": now_ms(), **extra}), qos=1, retain=True)

    def _publish_if_publishing(self, topic, payload=None, qos=0, retain=False, properties=None):
        if not self.publishing():
            self.held_back += 1
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN   # what paho says of a message it cannot send: a waiter is told
            return info
        self.published += 1
        if retain and self.on_retained is not None:
            self.on_retained(topic, payload)
        return self.raw_publish(topic, payload, qos, retain, properties)

    def flush_acks(self) -> None:
        """Acknowledge to the broker what is committed (from whichever thread gets here first). Only on
        an established connection: an ack queued while paho reconnects can go out before the CONNECT
        (the broker then drops the connection); the broker redelivers unacknowledged messages under
        the same ids, and they are acknowledged once the session is back."""
        if not self.connected.is_set():
            return
        acks, epoch = [], self.epoch
        while True:
            try:
                token, qos = self.ready_acks.popleft()
            except IndexError:
                break
            if token >> MID_BITS == epoch:
                acks.append((token & MID_MASK, qos))
        if acks:
            self.client.ack_many(acks)

    def acks_due(self, acks: list) -> None:
        """These messages are on disk now: acknowledge them (one wake-up of paho's loop for the batch).
        Held back while the connection is down: the broker hands them again under the same ids."""
        self.ready_acks.extend(acks)
        self._acks_since = time.monotonic()
        self.flush_acks()

    def flush_if_quiet(self) -> None:
        """Traffic paused: acks held while the connection was down go out once it is back."""
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

    def reconnect(self, will: bool) -> None:
        """Connect again, with or without the last will on the house status (only the active house's
        connection may leave an `offline` behind). A clean disconnect: no will fires, and the persistent
        session keeps what arrives meanwhile; what was delivered and not yet acknowledged comes again."""
        self.connected.clear()   # no acks on the way down (see flush_acks)
        self.client.disconnect()
        self.client.loop_stop()
        if will:
            self.client.will_set(*self.will)
        else:
            self.client.will_clear()
        self.has_will = will
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()

    def say_offline(self) -> None:
        """A clean stop says so (the will is for a crash); what is committed is acknowledged first (the
        intake has stopped), so the broker does not hand it to the next start again."""
        if not self.connected.is_set():
            return
        self.flush_acks()
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
