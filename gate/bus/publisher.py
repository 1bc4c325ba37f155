"""A command's own short-lived connection to the broker, in MQTT v5 so that every refusal is heard.

The box office's tools (`gate tickets import --publish`, `gate venue live|test`, ...) publish
through a `BusSession`. It differs from a gate's or the house's connection on purpose:

- MQTT v5: the broker's PUBACK carries a reason code. Under 3.1.1 Mosquitto acknowledges an
  ACL-denied publish like any other, and a command would print success for a message nobody got;
  here 0x87 (Not authorized) becomes `PublishRefused`, naming the user and the topic.
- Its own client id and a clean start with no session kept (session expiry 0): it never resumes,
  replaces or wipes a persistent party's session. (Under the broker's `use_username_as_clientid`
  the id is the user name: that is why the box office has a broker user of its own.)
- Every wait is bounded; what went wrong is said in words (BusError, PublishRefused).

It also keeps the newest message of each topic it subscribed to (bounded), so a command can wait
for the parties' retained status topics to say that they followed (gate/boxoffice/confirm.py).

    with BusSession(cfg.mqtt, "boxoffice-hall") as bus:
        bus.subscribe(topics.statuses(venue))
        bus.publish(topics.control(venue), message, retain=True)   # raises PublishRefused
        bus.wait_change(since, timeout)
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import paho.mqtt.client as mqtt

from gate.bus.client import BusError, connect, explain_refusal, guarded, make_client, where

MAX_TOPICS = 4096          # newest message kept per topic, for this many topics ...
MAX_PAYLOAD = 64 * 1024    # ... and only messages this small (statuses are a few hundred bytes)


class PublishRefused(BusError):
    """The broker answered a publish with a failure reason code (0x87 Not authorized, ...)."""


class BusSession:
    """One command's MQTT v5 connection: connect, subscribe, publish, each confirmed or refused in words."""

    def __init__(self, m, client_id: str, timeout: float = 10.0):
        self.m = m
        self.timeout = timeout
        self.user = m.username or "(no user name)"
        self.client = make_client(m, client_id, protocol=mqtt.MQTTv5)
        # No reconnecting (close() ends the wait): a new session would have lost the subscriptions, and
        # under the broker's use_username_as_clientid it would push off whoever took this user's id meanwhile.
        self.client.reconnect_delay_set(3600, 3600)
        self._cv = threading.Condition()
        self._connack = None
        self._closed = None            # the DISCONNECT reason (or the socket's end) once the broker let go
        self._pubacks: dict[int, Any] = {}    # mid -> the PUBACK's reason code
        self._subacks: dict[int, list] = {}
        self.latest: dict[str, bytes] = {}   # topic -> newest payload (bounded: MAX_TOPICS, MAX_PAYLOAD)
        self._limits: dict[str, int] = {}    # a larger bound for one named topic (read_retained)
        self.received = 0                    # messages taken in: a waiter's "something changed"
        self.client.on_connect = guarded(self._on_connect)
        self.client.on_disconnect = guarded(self._on_disconnect)
        self.client.on_publish = guarded(self._on_publish)
        self.client.on_subscribe = guarded(self._on_subscribe)
        self.client.on_message = guarded(self._on_message)
        self._open = False

    # -- paho's network thread -------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._cv:
            self._connack = reason_code
            self._cv.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cv:
            if self._closed is None:
                self._closed = reason_code
            self._cv.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._cv:
            self._pubacks[mid] = reason_code
            self._cv.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cv:
            self._subacks[mid] = list(reason_codes)
            self._cv.notify_all()

    def _on_message(self, client, userdata, msg):
        if len(msg.payload) > self._limits.get(msg.topic, MAX_PAYLOAD):
            return
        with self._cv:
            if msg.topic in self.latest or len(self.latest) < MAX_TOPICS:
                self.latest[msg.topic] = bytes(msg.payload)
                self.received += 1
                self._cv.notify_all()

    # -- the command's thread --------------------------------------------------------------
    def _wait(self, cond, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: cond() or self._closed is not None, timeout)

    def open(self) -> "BusSession":
        """Connect (clean start, nothing kept) and wait for the broker's answer; raises BusError in words."""
        connect(self.client, self.m)   # TCP and TLS: raises BusError saying why
        self.client.loop_start()
        self._open = True
        if not self._wait(lambda: self._connack is not None, self.timeout) or self._connack is None:
            self.close()
            if self._closed is not None:
                hint = ("is it a TLS port? then set tls = true and ca_file" if not self.m.tls
                        else "check the broker's log")
                raise BusError(f"{where(self.m)} closed the connection before answering ({self._closed}): {hint}")
            raise BusError(f"{where(self.m)} did not answer within {self.timeout:g} s")
        if self._connack.is_failure:
            self.close()
            raise BusError(f"{where(self.m)}: {explain_refusal(self._connack, self.m)}")
        return self

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe (QoS 1) and wait for the SUBACK; raises BusError when the broker said no."""
        rc, mid = self.client.subscribe(topic_filter, qos=1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise BusError(f"{where(self.m)}: cannot subscribe to {topic_filter} ({mqtt.error_string(rc)})")
        if not self._wait(lambda: mid in self._subacks, self.timeout) or mid not in self._subacks:
            raise BusError(self._gone(f"subscribing to {topic_filter}"))
        codes = self._subacks[mid]
        if not codes or codes[0].is_failure:
            raise BusError(f"{where(self.m)} refused user {self.user!r} a subscription to {topic_filter} "
                           f"({codes[0] if codes else 'no reason'}): re-run `gate broker config` to update the ACL")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                timeout: Optional[float] = None) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; raises PublishRefused when its reason code
        is a failure (naming the user and the topic), BusError when none came in time."""
        timeout = self.timeout if timeout is None else timeout
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BusError(f"{where(self.m)}: cannot publish to {topic} ({mqtt.error_string(info.rc)})")
        mid = info.mid
        if not self._wait(lambda: mid in self._pubacks, timeout) or mid not in self._pubacks:
            raise BusError(self._gone(f"publishing {len(payload):,} bytes to {topic}",
                                      "is the message larger than the broker's max_packet_size?"))
        rc = self._pubacks[mid]
        if rc.is_failure:
            hint = ""
            if getattr(rc, "value", 0) == 0x87:
                hint = (f": the broker's ACL does not let user {self.user!r} write {topic}; the box office's own "
                        "config (-c boxoffice.toml, user boxoffice) may, once `gate broker config` wrote the ACL")
            raise PublishRefused(f"{where(self.m)} refused user {self.user!r} publishing to {topic} ({rc}){hint}")

    def _gone(self, doing: str, hint: str = "") -> str:
        if self._closed is not None and getattr(self._closed, "value", 0) == 0x8E:   # Session taken over
            return (f"{where(self.m)} closed the connection while {doing}: another connection as user "
                    f"{self.user!r} took over (another box-office command at the same time?); run it again")
        if self._closed is not None:
            return f"{where(self.m)} closed the connection while {doing} ({self._closed})" + (f": {hint}" if hint else "")
        return f"{where(self.m)} did not acknowledge {doing} within {self.timeout:g} s"

    def read_retained(self, topic: str, timeout: float, max_bytes: int = MAX_PAYLOAD) -> Optional[bytes]:
        """The message retained on one topic (no wildcards), None when there is none: it comes right
        after the SUBACK, so a short wait tells. Up to `max_bytes` (a ticket list is large)."""
        self._limits[topic] = max_bytes
        self.subscribe(topic)
        self._wait(lambda: topic in self.latest, timeout)
        with self._cv:
            return self.latest.get(topic)

    def wait_change(self, seen: int, timeout: float) -> int:
        """Wait until a message arrives after the `seen`-th (or the timeout); returns the count now.
        Raises BusError once the broker has let go: nothing more can arrive (and no session was kept)."""
        if timeout > 0:
            self._wait(lambda: self.received != seen, timeout)
        with self._cv:
            if self._closed is not None:
                raise BusError(self._gone("waiting for answers", f"did another connection as user {self.user!r} "
                                          "(another box-office command) take over, or the broker restart?"))
            return self.received

    def snapshot(self) -> dict[str, bytes]:
        """The newest payload of every topic heard so far."""
        with self._cv:
            return dict(self.latest)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> "BusSession":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def session_id(role: str, venue: str) -> str:
    """A client id of a command's own (never a gate's or the house's)."""
    import secrets
    return f"{role}-{venue}-{secrets.token_hex(3)}"[:64]
