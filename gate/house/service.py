"""`gate house`: the house-count service.

Subscribes with a persistent session (fixed client id, MQTT 3.1.1 with
clean_session false, QoS 1), so the broker keeps what arrives while the
house is down. Scan events are acknowledged to the broker only after they
are committed to SQLite (paho's manual ack): a house killed at any moment
loses nothing, and an event delivered twice is stored once (its `id` is the
primary key). Counts are rebuilt from the database at start.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
import time
from collections import defaultdict, deque


from gate.bus import topics
from gate.boxoffice.lists import unpack_list
from gate.errors import ConfigError, GateError, PayloadError
from gate.house import attendance, discovery
from gate.clock import now_ms
from gate.house.counts import HouseCounts
from gate.house.gaps import GapTracker
from gate.house.log import AttendanceLog
from gate.storage import HouseFiles
from gate.bus.client import guarded, make_client, read_secret
from gate.bus.codec import unpack_scan

log = logging.getLogger("gate.house")

PUBLISH_EVERY = 0.25   # retained house topics: at most four updates a second
MAX_STATUS = 2048



class HouseService:
    def __init__(self, cfg):
        self.cfg = cfg
        self.venue = cfg.house.venue
        self.log = AttendanceLog(HouseFiles.of(cfg.storage.dir).log)
        self.db = self.log.db
        self.counts = HouseCounts()
        self.ids: set[str] = set()
        self.holders: dict[str, tuple] = {}
        self.gates: dict[str, dict] = {}
        self.malformed: dict[str, int] = defaultdict(int)
        self.duplicates = 0
        self.gaps = GapTracker()
        # Hand-offs between paho's network thread and the worker: deques (atomic append and
        # popleft), no locks. Acks are sent from the network thread where possible: from any
        # other thread each one has to wake paho's loop with a syscall.
        self.inbox: deque = deque()
        self.ready_acks: deque = deque()
        self._acks_since = 0.0
        self.dirty: set[str] = set(cfg.house.capacity)
        self.listeners: list = []
        self.lock = threading.Lock()      # guards counts/gates for the HTTP threads
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._worker, name="house", daemon=True)
        self.http = None
        self.connected = threading.Event()
        self._announced: set[str] = set()
        self._load()
        cid = cfg.house.client_id or f"house-{self.venue}"
        self.client = make_client(cfg.mqtt, cid, clean_session=False, manual_ack=True)
        self.client.on_connect = guarded(self._on_connect)
        self.client.on_disconnect = guarded(self._on_disconnect)
        self.client.on_message = guarded(self._on_message)
        self.token = read_secret(cfg.house.token_file, "GATE_DASHBOARD_TOKEN") if cfg.house.token_file else ""
        if cfg.house.token_file and not self.token:
            # An empty token would mean no token at all: refuse rather than open the dashboard.
            raise GateError(f"house.token_file: {cfg.house.token_file} is empty; refusing to serve the "
                            "dashboard without its token")

    def _load(self) -> None:
        self.holders = self.log.holders()
        n = 0
        for e in self.log.events():
            self.ids.add(e.id)
            self.gaps.track(e.gate, e.seq)
            self.dirty.add(self.counts.add(e, self.holders.get(e.ticket, ("",))[0]))
            n += 1
        if n:
            log.info("restored %d scan events from the attendance log", n)

    # -- MQTT (network thread: record and hand on) ----------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.report.on_connect(reason_code)   # says why once, if the broker said no
        if reason_code.is_failure:
            return
        log.info("connected (session present: %s)", flags.session_present)
        # The whole venue tree, so that malformed topic shapes are seen and counted too.
        client.subscribe(topics.venue_all(self.venue), 1)
        self.connected.set()
        self._announce_events(self.cfg.house.capacity)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        client.report.on_disconnect(reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self._flush_acks()
        self.inbox.append((msg.topic, msg.payload, msg.mid, msg.qos))

    def _flush_acks(self) -> None:
        """Acknowledge to the broker what is committed (from whichever thread gets here first)."""
        while True:
            try:
                mid, qos = self.ready_acks.popleft()
            except IndexError:
                return
            self.client.ack(mid, qos)

    # -- the worker ----------------------------------------------------------
    def _drop(self, kind: str, topic: str, detail=""):
        self.malformed[kind] += 1
        if self.malformed[kind] == 1:
            log.warning("dropping malformed message on %s: %s %s (further ones of this kind are counted)",
                        topic, kind, detail)

    def _handle_batch(self, batch) -> None:
        new, acks = [], []
        for topic, payload, mid, qos in batch:
            if qos:
                acks.append((mid, qos))
            gate = topics.gate_of(topic)
            kind = topic.rsplit("/", 1)[-1]
            if topic.startswith(topics.house_prefix(self.venue)):
                continue  # our own retained counts, echoed back
            if topic == topics.tickets(self.venue):
                self._apply_tickets(payload)
            elif not gate or not topic.startswith(f"{topics.ROOT}/{self.venue}/"):
                self._drop("unknown_topic", topic)
            elif kind == "scan":
                try:
                    e = unpack_scan(payload)
                except PayloadError as exc:
                    self._drop(exc.kind, topic, str(exc))
                    continue
                if e.gate != gate:
                    self._drop("gate_mismatch", topic, e.gate)
                    continue
                if e.id in self.ids:
                    self.duplicates += 1
                    continue
                self.ids.add(e.id)
                self.gaps.track(e.gate, e.seq)
                new.append(e)
            elif kind in ("status", "health"):
                self._gate_message(gate, kind, payload, topic)
            elif kind != "resend":
                self._drop("unknown_topic", topic)
        if new:
            with self.lock:
                for gate in {e.gate for e in new}:
                    self._seen(gate)
            self.log.add(new)
            with self.lock:
                for e in new:
                    self.dirty.add(self.counts.add(e, self.holders.get(e.ticket, ("",))[0]))
        if acks:   # only now, with the events on disk
            self.ready_acks.extend(acks)
            self._acks_since = time.monotonic()

    def _ask_for_gaps(self) -> None:
        """Ask each gate, over its resend topic, for events the broker never handed us
        (say it was killed between acknowledging a gate and delivering to us)."""
        if not self.connected.is_set():
            return
        for gate, asked in self.gaps.due().items():
            log.warning("gate %s: asking again for %d missing event(s)", gate, len(asked))
            self.client.publish(topics.resend(self.venue, gate), json.dumps({"seqs": asked}), qos=1)

    def _seen(self, gate: str) -> None:
        g = self.gates.setdefault(gate, {"gate": gate, "state": "unknown"})
        g["last_seen"] = now_ms()

    def _gate_message(self, gate, kind, payload, topic) -> None:
        if not payload:
            return  # a cleared retained message
        if len(payload) > MAX_STATUS:
            return self._drop("oversized", topic)
        try:
            obj = json.loads(payload)
            if not isinstance(obj, dict):
                raise ValueError
        except ValueError:
            return self._drop("bad_json", topic)
        with self.lock:
            self._seen(gate)
            g = self.gates[gate]
            if kind == "status":
                if obj.get("state") not in ("online", "offline"):
                    return self._drop("bad_field", topic, "state")
                g.update(state=obj["state"], profile=str(obj.get("profile", "")), version=str(obj.get("version", "")))
                self._announce_gate(gate)
            else:
                g["health"] = {k: obj.get(k) for k in ("fps", "decode_ms_p50", "decode_ms_p95", "outbox_depth",
                                                       "camera_ok", "ticket_data_version", "cpu_temp", "fault",
                                                       "dropped")}
        self.dirty.add("")

    def _apply_tickets(self, payload) -> None:
        if not payload:
            return
        try:
            _, tickets, _ = unpack_list(payload)
        except PayloadError as exc:
            return self._drop(exc.kind, "tickets", str(exc))
        self.holders = self.log.replace_holders(tickets)
        log.info("holder directory updated: %d tickets", len(self.holders))

    def _worker(self) -> None:
        last_pub = last_gaps = 0.0
        while not self.stop.is_set():
            batch = []
            try:
                while len(batch) < 2000:
                    batch.append(self.inbox.popleft())
            except IndexError:
                if not batch:
                    if self.ready_acks and time.monotonic() - self._acks_since > 0.02:
                        self._flush_acks()   # traffic paused: nobody else will send them
                    time.sleep(0.005)
            if batch:
                try:
                    self._handle_batch(batch)
                except Exception:
                    log.exception("batch failed; its messages stay unacknowledged and come again")
            now = time.monotonic()
            if now - last_gaps >= 1.0:
                last_gaps = now
                self._ask_for_gaps()
            if self.dirty and now - last_pub >= PUBLISH_EVERY:
                last_pub = now
                self._publish()

    def _publish(self) -> None:
        with self.lock:
            dirty, self.dirty = self.dirty, set()
            caps = self.cfg.house.capacity
            snaps = [self.counts.snapshot(ev, caps.get(ev)) for ev in dirty if ev]
        if self.connected.is_set():
            self._announce_events([s["event"] for s in snaps])
            for s in snaps:
                self.client.publish(topics.house(self.venue, s["event"]), json.dumps(s), qos=1, retain=True)
                self.client.publish(topics.house_inside(self.venue, s["event"]), str(s["inside"]), qos=1, retain=True)
        else:
            with self.lock:
                self.dirty |= dirty   # publish once the broker is back
        for q in list(self.listeners):
            try:
                q.put_nowait(1)
            except queue.Full:
                pass

    # -- Home Assistant discovery --------------------------------------------
    def _announce_events(self, events) -> None:
        for ev in events:
            if not ev or ev in self._announced or not self.connected.is_set():
                continue
            self._announced.add(ev)
            for topic, cfg in discovery.event_sensors(self.venue, ev):
                self.client.publish(topic, json.dumps(cfg), qos=1, retain=True)

    def _announce_gate(self, gate: str) -> None:
        key = "gate:" + gate
        if key in self._announced or not self.connected.is_set():
            return
        self._announced.add(key)
        topic, cfg = discovery.gate_connectivity(self.venue, gate)
        self.client.publish(topic, json.dumps(cfg), qos=1, retain=True)

    # -- queries ---------------------------------------------------------------
    def api(self) -> dict:
        with self.lock:
            caps = self.cfg.house.capacity
            names = sorted((set(self.counts.events) | set(caps)) - {""})
            return {"venue": self.venue, "ts": now_ms(),
                    "events": [self.counts.detail(ev, caps.get(ev)) for ev in names],
                    "gates": sorted(({**g, "missing": self.gaps.missing(g["gate"]),
                                      "unrecovered": self.gaps.lost(g["gate"])}
                                     for g in self.gates.values()), key=lambda g: g["gate"]),
                    "arrivals": list(self.counts.arrivals)[::-1][:50],
                    "malformed": dict(self.malformed), "duplicates": self.duplicates}

    def attendance(self) -> list[dict]:
        """The attendance log for the box office's CRM: one row per effective admission."""
        return attendance.rows(self.db, self.counts, self.holders)

    # -- running -----------------------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive)
        self.client.loop_start()
        self._thread.start()
        from gate.house.web import serve
        self.http = serve(self, self.cfg.house.listen)

    def close(self) -> None:
        self.stop.set()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self._thread.ident is not None:
            self._thread.join(timeout=2)
        if self._thread.is_alive():
            log.warning("the house worker did not stop within 2 s")
        self.client.disconnect()
        self.client.loop_stop()
        self.log.close()


def main(args) -> int:
    from gate.config import load
    cfg = load(args.config)
    if cfg.house is None:
        raise ConfigError(args.config, "house", 0, "gate house needs a [house] section")
    if args.action == "export":
        svc = HouseService(cfg)
        try:
            if args.out:
                with open(args.out, "w", newline="", encoding="utf-8") as f:
                    n = attendance.export(svc, args.format, f)
            else:
                n = attendance.export(svc, args.format, sys.stdout)
        finally:
            svc.log.close()
        print(f"exported {n} admissions", file=sys.stderr)
        return 0
    svc = HouseService(cfg)
    svc.start()
    log.info("dashboard on http://%s/", cfg.house.listen)
    from gate import systemd
    systemd.notify("READY=1")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    watchdog = systemd.Watchdog()
    while not done.wait(1.0):
        if svc._thread.is_alive():
            watchdog.ping()
    svc.close()
    return 0
