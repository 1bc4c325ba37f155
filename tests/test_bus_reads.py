"""The shared MQTT client's chunked reads and batched acknowledgements (gate/bus/client.py), against a real Mosquitto."""

import socket
import threading
import time

import paho.mqtt.client as mqtt

from gate.bus.client import Client
from tests.conftest import publish_raw, wait_for


class Reader:
    """A persistent-session subscriber on gate/t/#, with manual acks, counting what it is handed."""

    def __init__(self, port: int, client_id: str = "reader"):
        self.port, self.client_id = port, client_id
        self.got: list[tuple[bytes, int]] = []
        self.lock = threading.Lock()
        self.recvs = 0
        self.c = self._client()

    def _client(self) -> Client:
        c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False, manual_ack=True)
        c.on_connect = lambda c, u, f, rc, p: c.subscribe("gate/t/#", qos=1)
        c.on_message = self._on_message
        real = Client._sock_recv

        def counting(n):
            if not c._buffered():
                self.recvs += 1
            return real(c, n)
        c._sock_recv = counting
        return c

    def _on_message(self, c, u, msg):
        with self.lock:
            self.got.append((msg.payload, msg.mid))

    def start(self):
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        wait_for(lambda: self.c.is_connected(), what="reader connected")
        return self

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_a_burst_then_silence_is_all_handed_over_at_once(broker):
    """Messages left in the read buffer when the socket falls quiet are handed over without waiting for more
    traffic (select cannot see them), and in order; far fewer socket reads than messages."""
    r = Reader(broker.port).start()
    try:
        r.c.subscribe("gate/t/#", qos=1)
        time.sleep(0.3)
        payloads = [f"m{i:05d}".encode() * 3 for i in range(2000)]
        publish_raw(broker.port, "gate/t/a", payloads)
        t0 = time.monotonic()
        wait_for(lambda: len(r.got) >= 2000, timeout=5, what="all 2,000 handed over")
        assert time.monotonic() - t0 < 2   # paho's select waits 1 s at a time, the keepalive far longer
        assert [p for p, _ in r.got] == payloads
        assert r.recvs < 1000, r.recvs   # paho alone: at least three reads a message
    finally:
        r.stop()


def test_a_large_message_among_small_ones_arrives_whole(broker):
    big = bytes(range(256)) * 4096   # 1 MiB: many reads, cut anywhere
    r = Reader(broker.port).start()
    try:
        time.sleep(0.3)
        publish_raw(broker.port, "gate/t/a", [b"before", big, b"after"])
        wait_for(lambda: len(r.got) >= 3, timeout=10, what="three messages")
        assert [p for p, _ in r.got] == [b"before", big, b"after"]
    finally:
        r.stop()


def test_ack_many_acknowledges_exactly_what_it_is_given(broker):
    """Acknowledged in one write: the broker never hands those again; the rest it hands again on reconnect."""
    r = Reader(broker.port, "acker").start()
    time.sleep(0.3)
    publish_raw(broker.port, "gate/t/a", [b"%d" % i for i in range(40)])
    wait_for(lambda: len(r.got) >= 40, what="all 40, none acknowledged yet")
    with r.lock:
        first = list(r.got)
    r.c.ack_many([(mid, 1) for _, mid in first[:15]])
    time.sleep(0.5)
    r.stop()
    again = Reader(broker.port, "acker").start()
    try:
        wait_for(lambda: len(again.got) >= 25, what="what was not acknowledged, again")
        again.c.ack_many([(mid, 1) for _, mid in list(again.got)])
        time.sleep(0.5)
        with again.lock:
            seen = sorted(int(p) for p, _ in again.got)
        assert seen == list(range(15, 40))
    finally:
        again.stop()


def test_the_buffer_never_outlives_its_socket():
    """What was read ahead on one connection is never handed to paho on the next (a reconnect makes a new socket)."""
    c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x")
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    try:
        c._sock = a
        a_peer.sendall(b"old-connection-bytes")
        assert c._sock_recv(4) == b"old-"
        c._sock = b
        b_peer.sendall(b"new")
        assert c._sock_recv(10) == b"new"
    finally:
        c._sock = None
        for s in (a, a_peer, b, b_peer):
            s.close()


class EndlessSocket:
    """A socket that always has more to read: QoS 0 PUBLISHes of 88 bytes after a 92-byte one, so that no
    packet ever ends where a 64 KiB read ends (every packet ends 4 bytes past a multiple of 8). Gives up
    (end of stream) after `limit` bytes, so a reader that never stops fails instead of hanging."""

    def __init__(self, limit: int):
        def publish(payload: bytes) -> bytes:
            body = b"\x00\x08gate/t/a" + payload
            return bytes([0x30, len(body)]) + body
        self.head, self.packet = publish(b"y" * 80), publish(b"x" * 76)
        assert len(self.head) == 92 and len(self.packet) == 88
        self.served, self.limit = 0, limit

    def recv(self, n: int) -> bytes:
        if self.served >= self.limit:
            return b""
        start, self.served = self.served, self.served + n
        if start < len(self.head):
            return (self.head[start:] + self.packet * (n // len(self.packet) + 1))[:n]
        at = (start - len(self.head)) % len(self.packet)
        return (self.packet * (n // len(self.packet) + 2))[at:at + n]

    def close(self) -> None:
        pass


def test_a_socket_that_never_runs_dry_does_not_keep_the_reader_from_writing():
    """loop_read hands paho what one read brought and returns (select and the writes come next), however
    much more the socket has: a broker that never lets it run dry must not starve acks, publishes, pings."""
    c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x")
    got = []
    c.on_message = lambda c, u, msg: got.append(msg.payload)
    sock = EndlessSocket(limit=8 << 20)
    c._sock = sock   # type: ignore[assignment]
    try:
        assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert sock.served <= 3 * 65536, sock.served   # not the whole stream (its end would say CONN_LOST)
        assert 700 <= len(got) <= sock.served // 88 and set(got) <= {b"y" * 80, b"x" * 76}
        before = len(got)
        assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS   # and the next call goes on where this one stopped
        assert len(got) > before and set(got) <= {b"y" * 80, b"x" * 76}
    finally:
        c._sock = None
