"""A gate's MQTT side: drains the outbox, announces status, reports health,
and hears the other gates' scans (used-ticket sync) and new ticket data.

Nothing here runs on the scan loop. Publishing is gated on a *confirmed*
connection (the broker's CONNACK said success); a row leaves the outbox only
when its PUBACK arrives (`on_publish` with the message id). After a
reconnect every unacknowledged row is sent again with the same `id`, and the
house service counts it once.

What other parties send is bounded here, before it can make work: other
gates' scans pass a per-gate and an overall rate (a flood of forged
admissions is dropped and counted, not queued for the scan loop); resend
requests are validated, queued at most RESEND_QUEUE deep, deduplicated (a seq
resent in the last RESEND_DEDUPE_S is not sent again) and served at most
RESEND_RATE events a second. Every drop is counted in `dropped` (the gate's
health shows it) and logged at a bounded rate.

MQTT v5 with a persistent session (clean_start=False and a session that never
expires, as 3.1.1's clean_session=False), so that the broker can say why it
closed us: a session taken over by another connection under this gate's id is
not a network blip, and gate/identity.py decides what it means and how long to
wait before taking the session back. The gate also reads its own retained status
(who spoke last under its id) and tells its own scans from another device's by
the instance id each carries (gate/state/instance.py).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Callable, Optional

import paho.mqtt.client as mqtt

from gate import __version__
from gate.bus import topics
from gate.bus.client import SESSION_NEVER_EXPIRES, guarded, make_client, resume_session
from gate.bus.codec import unpack_scan
from gate.bus.limits import Drops, TokenBucket
from gate.bus.messages import unpack_resend, unpack_status
from gate.core.clock import now_ms
from gate.core.errors import PayloadError
from gate.core.worker import Worker
from gate.identity import SESSION_TAKEN_OVER, IdentityWatch
from gate.state.outbox import Outbox

log = logging.getLogger(__name__)

RESEND_QUEUE = 4           # resend requests waiting; more are dropped (the house asks again)
RESEND_RATE = 500          # events resent a second, on average ...
RESEND_BURST = 2000        # ... with bursts up to this
RESEND_DEDUPE_S = 2.0      # a seq resent this recently is not resent again (the house re-asks after 3 s)
# Other gates' scans a second, all together and from any one gate. A busy door scans about once a
# second, but a gate back from an outage drains its whole outbox at once (thousands of admissions in a
# couple of seconds), and every one of them must reach the other doors' record of use, or those tickets
# could be used again there: the bursts allow a night offline; the sustained rates bound a flood.
REMOTE_RATE, REMOTE_BURST = 500, 20_000
REMOTE_GATE_RATE, REMOTE_GATE_BURST = 100, 10_000
# Other gates tracked for those rates. A venue of several bridged entrances runs hundreds of lanes (issue 24:
# 400), and a gate that stops tracking senders drops their scans: tickets used there stay usable here.
MAX_REMOTE_GATES = 1024
REMOTE_RESULTS = frozenset(("admitted", "exited", "annulled"))   # the only ones that change a ticket's use


class GateLink(Worker):
    """The gate's connection to the broker, on its own threads."""

    INFLIGHT = 1000

    def __init__(self, cfg, outbox_path, *, profile: str, on_remote_scan: Callable = None,
                 on_tickets: Callable = None, health: Callable[[], dict] = None, health_every: float = 10.0,
                 on_control: Callable[[bytes], None] = None, instance: str = "",
                 on_clash: Optional[Callable[[str], None]] = None, readonly: bool = False):
        super().__init__("publisher")
        self.cfg = cfg
        self.venue, self.gate = cfg.gate.venue, cfg.gate.id
        self.profile = profile
        self.instance = instance
        self.identity = IdentityWatch(self.gate, instance, on_clash)
        self.outbox = Outbox(outbox_path, readonly=readonly)  # the publisher's own connection
        self.on_remote_scan = on_remote_scan
        self.on_tickets = on_tickets
        self.on_control = on_control
        self.state: dict = {}              # what the status topic says besides online/offline (mode, latch)
        # report() (the loop) and _on_connect (the network thread) take turns: a change reported while the
        # connection is being made is either in the status _on_connect publishes or published by report().
        self._status_lock = threading.Lock()
        self.health = health
        self.health_every = health_every
        self.connected = threading.Event()
        self.disconnected_since: Optional[float] = time.monotonic()
        self.acks: "queue.Queue[int]" = queue.Queue()
        self.resend_requests: "queue.Queue[list]" = queue.Queue(maxsize=RESEND_QUEUE)
        self._resend_bucket = TokenBucket(RESEND_RATE, RESEND_BURST)
        self._resent: dict[int, float] = {}   # seq -> when last resent
        self._remote_bucket = TokenBucket(REMOTE_RATE, REMOTE_BURST)
        self._remote_gates: dict[str, TokenBucket] = {}
        self.inflight: dict[int, int] = {}   # mid -> seq
        self.sent_up_to = 0
        self.drops = Drops(log, "message from the bus")
        self.dropped = self.drops.counts       # kind -> count, read by the gate's health report
        self._gen = 0
        # The will carries no ts: it is written now but sent by the broker when we die, and a ts
        # from now would be older than the `online` we publish later. Receivers use receipt time.
        will = (topics.status(self.venue, self.gate), self._status("offline", stamped=False), 1, True)
        self.client = make_client(cfg.mqtt, self.gate, will=will, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(self.INFLIGHT)
        self._refused: set[int] = set()     # mids whose PUBACK said no (v5 reason code): not sent
        self.client.on_connect = guarded(self._on_connect)
        self.client.on_disconnect = guarded(self._on_disconnect)
        self.client.on_publish = guarded(self._on_publish)
        self.client.on_message = guarded(self._on_message)

    def _status(self, state: str, stamped: bool = True) -> str:
        body = {"state": state, "profile": self.profile, "version": __version__, **self.state}
        if self.instance:
            body["instance"] = self.instance
        if stamped:
            body["ts"] = now_ms()
        return json.dumps(body)

    def report(self, **state) -> None:
        """Say on the retained status topic what the gate is doing (its mode, an out-of-order latch).
        Called from the loop: paho only queues the publish."""
        with self._status_lock:   # only queues: held for as long as paho takes to queue a message
            self.state = {**self.state, **state}   # replaced whole: the network thread may be reading it
            if self.connected.is_set():
                self.client.publish(topics.status(self.venue, self.gate), self._status("online"), qos=1, retain=True)

    def start(self) -> None:
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive, **resume_session(SESSION_NEVER_EXPIRES))
        self.client.loop_start()
        super().start()

    # -- paho callbacks (network thread) -------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.report.on_connect(reason_code)   # says why once, if the broker said no
        if reason_code.is_failure:
            return
        log.info("connected to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)
        client.reconnect_delay_set(1, 1)   # back to the LAN's quick retry (a takeover lengthened it)
        self.identity.connected()
        with self._status_lock:
            # Our own status first, before we publish ours: the retained one says who spoke last under our id.
            client.subscribe([(topics.status(self.venue, self.gate), 1), (topics.scans(self.venue), 1),
                              (topics.tickets(self.venue), 1), (topics.resend(self.venue, self.gate), 1),
                              (topics.control(self.venue), 1)])
            client.publish(topics.status(self.venue, self.gate), self._status("online"), qos=1, retain=True)
            self._gen += 1
            self.disconnected_since = None
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        client.report.on_disconnect(reason_code)
        told = getattr(reason_code, "value", None) == SESSION_TAKEN_OVER
        if told or self.identity.clash:
            # Not a blip, and not to be fought (logged there). Mosquitto 2.0.11 does not say 0x8E: then the
            # retained status we find on reconnecting tells (gate/identity.py), and from then on every loss.
            wait = self.identity.taken_over(told)
            client.reconnect_delay_set(wait, wait)
        elif self.connected.is_set():
            # Routine on a LAN (a broker restart, a Wi-Fi roam); a cause that lasts is logged as an error by
            # the connection report, once.
            log.info("disconnected from broker (%s); reconnecting", reason_code)
        self.connected.clear()
        self.disconnected_since = self.disconnected_since or time.monotonic()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code is not None and reason_code.is_failure:
            # MQTT v5 says why (e.g. Not authorized: the ACL); the row stays in the outbox and is sent again
            # on the next connection, never deleted as if delivered.
            self._refused.add(mid)
            self.drops.add("publish_refused", f"message {mid}", str(reason_code))
        self.acks.put(mid)

    def _on_message(self, client, userdata, msg):
        try:
            self._receive(msg.topic, msg.payload)
        except Exception as exc:   # a bug costs this one message, never the network thread
            self.drops.add("internal_error", msg.topic, repr(exc))

    def _receive(self, topic: str, payload: bytes) -> None:
        if topic == topics.resend(self.venue, self.gate):
            try:
                seqs = unpack_resend(payload)
            except PayloadError as exc:
                return self.drops.add("bad_resend", topic, exc)
            try:
                self.resend_requests.put_nowait(seqs)
            except queue.Full:
                self.drops.add("resend_busy", topic, f"{len(seqs)} seqs")
            return
        if topic == topics.tickets(self.venue):
            if self.on_tickets and payload:
                self.on_tickets(payload)
            return
        if topic == topics.control(self.venue):
            if self.on_control and payload:
                self.on_control(bytes(payload[:1024]))   # verified by the loop; oversize fails there
            return
        if topic == topics.status(self.venue, self.gate):
            if payload:
                try:
                    self.identity.status(unpack_status(payload))
                except PayloadError as exc:
                    self.drops.add(exc.kind, topic, exc)
            return
        sender = topics.gate_of(topic)
        if not topic.endswith("/scan"):
            return  # status and health of other gates: not ours to act on
        try:
            event = unpack_scan(payload)
        except PayloadError as exc:
            return self.drops.add(exc.kind, topic, exc)
        if event.gate != sender:
            return self.drops.add("gate_mismatch", topic, event.gate)
        if sender == self.gate and not self.identity.scan(event.instance):
            return  # our own scans, echoed back (another device's under our id go on: used-ticket sync)
        if event.result not in REMOTE_RESULTS or not event.ticket or event.mode == "info":
            return  # changes no ticket's use here
        if not self._remote_allowed(sender):
            return self.drops.add("remote_rate", topic)
        if self.on_remote_scan:
            self.on_remote_scan(event)

    def _remote_allowed(self, sender: str) -> bool:
        bucket = self._remote_gates.get(sender)
        if bucket is None:
            if len(self._remote_gates) >= MAX_REMOTE_GATES:
                return False
            bucket = self._remote_gates[sender] = TokenBucket(REMOTE_GATE_RATE, REMOTE_GATE_BURST)
        return bucket.take() and self._remote_bucket.take()

    # -- publisher thread ----------------------------------------------------
    def _take_acks(self, wait: float) -> list[int]:
        """Sequence numbers the broker acknowledged since the last call."""
        acked, mids = [], []
        end = time.monotonic() + wait
        try:
            while True:  # gather for up to `wait`, so each pass moves a batch, not a handful
                left = end - time.monotonic()
                mids.append(self.acks.get(timeout=left) if left > 0 else self.acks.get_nowait())
        except queue.Empty:
            pass
        for mid in mids:
            seq = self.inflight.pop(mid, None)
            if mid in self._refused:
                self._refused.discard(mid)
                continue   # refused by the broker: kept in the outbox, sent again after a reconnect
            if seq is None:
                # The PUBACK beat us to recording the mid, or it was a status or
                # health publish. Kept briefly: mids wrap at 65535.
                self.early[mid] = time.monotonic()
            else:
                acked.append(seq)
        return acked

    def run(self) -> None:
        last_health = 0.0
        gen = -1
        self.early: dict[int, float] = {}
        while not self.stopping.is_set():
            if not self.connected.wait(0.2):
                continue
            if gen != self._gen:  # a fresh connection: resend everything unacknowledged
                gen, self.sent_up_to = self._gen, 0
                self.inflight.clear()
                self.early.clear()
            acked = self._take_acks(0)
            room = self.INFLIGHT - len(self.inflight)
            if room >= self.INFLIGHT // 4 or not self.inflight:  # refill in large batches
                for seq, payload in self.outbox.pending(self.sent_up_to, room):
                    info = self.client.publish(topics.scan(self.venue, self.gate), payload, qos=1)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break  # connection dropped; resent after reconnect
                    if self.early.pop(info.mid, None) is not None:
                        acked.append(seq)
                    else:
                        self.inflight[info.mid] = seq
                    self.sent_up_to = seq
            try:
                self._serve_resend(self.resend_requests.get_nowait())
            except queue.Empty:
                pass
            acked += self._take_acks(0.02 if self.inflight else 0.05)
            self.outbox.ack(acked)
            now = time.monotonic()
            if self.early:
                self.early = {m: t for m, t in self.early.items() if now - t < 2.0}
            if self.health and now - last_health >= self.health_every:
                last_health = now
                try:
                    self.client.publish(topics.health(self.venue, self.gate), json.dumps(self.health()), qos=0)
                except Exception:
                    log.exception("health report failed")

    def _serve_resend(self, seqs: list[int]) -> None:
        """Send again events the house asks for: deduplicated and within the resend rate."""
        now = time.monotonic()
        fresh = [s for s in seqs if now - self._resent.get(s, -1e9) > RESEND_DEDUPE_S]
        if len(fresh) < len(seqs):
            self.drops.counts["resend_repeat"] = self.drops.get("resend_repeat") + len(seqs) - len(fresh)
        allowed = fresh
        while allowed and not self._resend_bucket.take(len(allowed)):
            allowed = allowed[:len(allowed) // 2]
        if len(allowed) < len(fresh):
            self.drops.add("resend_rate", topics.resend(self.venue, self.gate), f"{len(fresh) - len(allowed)} seqs")
        if not allowed:
            return
        for s in allowed:
            self._resent[s] = now
        if len(self._resent) > 4 * RESEND_BURST:
            self._resent = {s: t for s, t in self._resent.items() if now - t <= RESEND_DEDUPE_S}
        for payload in self.outbox.sent_payloads(allowed):
            # Already acknowledged once: resent for the house, whose `id` check counts it once.
            self.client.publish(topics.scan(self.venue, self.gate), payload, qos=1)

    def offline_for(self) -> float:
        """Seconds since the broker was last reachable (0 when connected)."""
        return 0.0 if self.disconnected_since is None else time.monotonic() - self.disconnected_since

    def close(self, drain_s: float = 3.0) -> None:
        """Stop, first giving unsent events a bounded moment; what is left goes at next start."""
        end = time.monotonic() + drain_s
        while self.connected.is_set() and self.outbox.depth() and time.monotonic() < end:
            time.sleep(0.05)
        self.stop(timeout=2.0)
        try:
            if self.connected.is_set():
                info = self.client.publish(topics.status(self.venue, self.gate), self._status("offline"),
                                           qos=1, retain=True)
                info.wait_for_publish(timeout=1)  # shutdown path, never the scan loop
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close()
