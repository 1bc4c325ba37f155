"""The MQTT client set-up every side shares (gate, house, box office): credentials, TLS, will,
and what a failed connection is called in words.

A connection can fail in many ways that all look alike from inside paho (it retries
quietly every second). `explain()` turns each one into one sentence with what to
check; `ConnectionReport` logs that sentence once per distinct cause, and once more
when the connection is back. `gate doctor` uses the same `explain()`, so the operator
reads the same words in the journal and at the console.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import struct
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gate.core.errors import GateError

log = logging.getLogger(__name__)

# OpenSSL's X509_V_ERR_* codes that mean something different to an operator.
_HOSTNAME_MISMATCH = 62
_EXPIRED, _NOT_YET_VALID = 10, 9


class BusError(GateError, ConnectionError):
    """The MQTT client cannot be set up or cannot reach the broker; the message says what to check."""


def read_secret(path: str, env: str) -> str:
    """A secret from the environment or a file (never from the config itself)."""
    if os.environ.get(env):
        return os.environ[env]
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except IsADirectoryError:
            raise BusError(f"{path} is a directory, not a secret file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BusError(f"cannot read the secret file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return ""


# MQTT v5's Session Expiry Interval for a session that never expires: what 3.1.1's clean_session=False
# means (Mosquitto keeps such a session, and what is queued for it, across the client's absence and restarts).
SESSION_NEVER_EXPIRES = 0xFFFFFFFF


def resume_session(expiry_s: int) -> dict:
    """connect()/connect_async() arguments for an MQTT v5 client's persistent session: resumed on every
    connect (clean_start=False; paho's default would start afresh on the first connect after a restart),
    kept by the broker `expiry_s` seconds after the client is gone."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return {"clean_start": False, "properties": props}


READ_CHUNK = 65536   # bytes taken from the socket at once (paho alone asks for a packet's pieces one by one)


class Client(mqtt.Client):
    """paho's client, reading the socket in chunks and sending acknowledgements together.

    paho reads each packet with three or more `recv` calls (its command byte, each byte of its
    length, its body) and goes back to `select` after each packet; each acknowledgement is one more
    wake-up and one more `send`. Draining a backlog (a house back after an outage: thousands of
    events queued for it) spends most of its time in those system calls. Here one `recv` takes what
    the socket has (up to READ_CHUNK) and paho is fed from it until it is used up, and `ack_many`
    queues a batch's PUBACKs as one write. Nothing else changes: the bytes paho sees are the same.

    The buffer belongs to the socket it was read from: after a reconnect (a new socket) what was
    left of the old connection is never handed to the new one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self._draining = False   # feeding paho only what is buffered: the socket is not read again

    def _buffered(self) -> int:
        if self._rsock is not self._sock:
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        return len(self._rbuf) - self._rpos

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._buffered():
            if self._draining:
                raise BlockingIOError   # the rest waits for select(), as if the socket had none yet
            data = super()._sock_recv(max(bufsize, READ_CHUNK))   # raises BlockingIOError when there is none
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos:end]
        self._rpos = end
        if end >= len(self._rbuf):
            self._rbuf, self._rpos = b"", 0
        return out

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # select() cannot see what is already read: go on while the buffer holds any. Only what it holds:
        # a packet cut at the buffer's end waits for select() like one cut by the network. Were the socket
        # read again here, a broker that never lets it run dry (a flood, or packets that never end exactly
        # at a chunk's end) would keep this loop from returning, and nothing would be written meanwhile:
        # no acknowledgement, no publish, no PINGREQ (the broker drops a client silent for 1.5 keepalives).
        rc = super().loop_read(max_packets)
        self._draining = True
        try:
            while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
                rc = super().loop_read(1)
        finally:
            self._draining = False
        return rc

    def ack_many(self, acks) -> None:
        """Acknowledge (mid, qos) pairs of manually acknowledged messages: QoS 1 PUBACKs go out as one write."""
        pubacks = bytearray()
        for mid, qos in acks:
            if qos == 1 and self._manual_ack:
                pubacks += struct.pack("!BBH", PUBACK, 2, mid)
            else:
                self.ack(mid, qos)
        if pubacks:
            self._packet_queue(PUBACK, bytes(pubacks), 0, 0)


def make_client(m, client_id: str, *, clean_session: bool = True, will=None,
                manual_ack: bool = False, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311) -> Client:
    """A paho 2.x client set up from an [mqtt] section (credentials, TLS, will).

    `protocol=mqtt.MQTTv5` for a client that must read the broker's reason codes (a refused
    publish); MQTT 5 has no clean_session flag (clean start is given to connect()): for a persistent
    v5 session connect with `connect_async(host, port, keepalive, **resume_session(expiry))`.

    The client carries a `report` (ConnectionReport) and already reports failed
    connection attempts; its owner calls `report.on_connect(reason_code)` from its own
    on_connect and `report.on_disconnect(reason_code)` from its on_disconnect."""
    c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=None if protocol == mqtt.MQTTv5 else clean_session,
                    protocol=protocol, manual_ack=manual_ack)
    if m.username:
        c.username_pw_set(m.username, read_secret(m.password_file, "GATE_MQTT_PASSWORD") or None)
    if m.tls:
        from gate.bus.tls import ca_file_problem
        problem = ca_file_problem(m.ca_file) if m.ca_file else ""
        if problem:
            raise BusError(f"mqtt.ca_file: {problem}")
        try:
            c.tls_set(ca_certs=m.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise BusError(f"mqtt.ca_file: cannot use {m.ca_file or 'the system CAs'}: {exc}") from None
    if will:
        c.will_set(*will)
    c.reconnect_delay_set(1, 1)  # a few gates on a LAN: retry every second, back quickly after an outage
    report = ConnectionReport(m)
    c.report = report  # type: ignore[attr-defined]  # paho's Client has no slot for it; every owner reads c.report
    c.on_connect_fail = report.on_connect_fail
    return c


def connect(c: mqtt.Client, m, keepalive: int = 0) -> None:
    """A blocking first connect (box-office tools); failures raise BusError in words."""
    try:
        c.connect(m.host, m.port, keepalive=keepalive or m.keepalive)
    except (OSError, ValueError) as exc:
        raise BusError(explain(exc, m)) from None


def where(m) -> str:
    return f"broker {m.host}:{m.port}{' (TLS)' if m.tls else ''}"


def explain(exc: BaseException, m) -> str:
    """One sentence: why connecting to the broker of [mqtt] section m failed, and what to check."""
    at = f"{m.host}:{m.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0)
        msg = getattr(exc, "verify_message", "") or str(exc)
        if code == _HOSTNAME_MISMATCH or "hostname" in msg.lower() or "IP address mismatch" in msg:
            return (f"the broker's TLS certificate is not for {m.host!r} ({msg}): set [mqtt] host to a name "
                    f"the certificate carries, or reissue the broker's certificate for {m.host}")
        if code in (_EXPIRED, _NOT_YET_VALID):
            return (f"the broker's TLS certificate is outside its validity ({msg}): renew it, "
                    "or check this machine's clock (timedatectl)")
        ca = m.ca_file or "the system's CA store"
        return (f"the broker's TLS certificate is not signed by the CA in {ca} ({msg}): set mqtt.ca_file "
                "to the venue CA certificate that signed the broker's certificate")
    if m.tls and isinstance(exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, EOFError)):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return (f"TLS handshake with {at} failed ({reason}): is port {m.port} the broker's TLS listener? "
                "(tls = true needs the TLS port, usually 8883; the plain port is usually 1883)")
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing accepts connections on {at}: check the broker is running (systemctl status "
                "mosquitto) and [mqtt] host and port")
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {m.host!r} ({exc.strerror}): check [mqtt] host and this machine's DNS"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {at} in time: check the network path and firewall to the broker"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN):
        return f"cannot reach {at} ({exc.strerror}): check this machine's network connection"
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot connect to {at} ({detail}): check [mqtt] host, port and tls"


def explain_refusal(reason_code, m) -> str:
    """Words for a CONNACK that said no."""
    text = str(reason_code)
    if "authori" in text.lower() or "user name or password" in text.lower():
        secret = m.password_file or "GATE_MQTT_PASSWORD"
        return (f"the broker refused our credentials ({text}): check [mqtt] username "
                f"({m.username or 'none set'}) and the password in {secret}")
    if "identifier" in text.lower():
        return f"the broker refused our client id ({text}): is another device using the same gate id?"
    return f"the broker refused the connection ({text})"


class ConnectionReport:
    """Logs why the broker cannot be reached: once per cause, and once when it is back."""

    def __init__(self, m):
        self.m = m
        self.last = ""          # the cause logged last; '' while connected (or never tried)
        self.connected = False
        self.failures = 0

    def failed(self, words: str) -> None:
        self.failures += 1
        if words != self.last:
            log.error("%s: %s", where(self.m), words)
            self.last = words

    # paho callbacks (network thread); the owner forwards on_connect/on_disconnect
    def on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]   # paho calls us from inside its `except OSError`
        self.failed(explain(exc, self.m) if exc is not None else f"cannot connect to {where(self.m)}")

    def on_connect(self, reason_code) -> None:
        if reason_code.is_failure:
            self.failed(explain_refusal(reason_code, self.m))
            return
        if self.last:
            log.info("%s: connected again", where(self.m))
        self.last, self.connected = "", True

    def on_disconnect(self, reason_code) -> None:
        if not self.connected and not self.last:
            # TCP was accepted but no CONNACK came: the other end does not speak plain MQTT here.
            hint = ("is it a TLS port? then set tls = true and ca_file" if not self.m.tls
                    else "check the broker's log")
            self.failed(f"{self.m.host}:{self.m.port} closed the connection before answering ({reason_code}): {hint}")
        self.connected = False


def guarded(fn):
    """paho's network thread dies on an exception in a callback: never let one out."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("error in MQTT callback %s", fn.__name__)
    wrapper.__name__ = fn.__name__
    return wrapper
