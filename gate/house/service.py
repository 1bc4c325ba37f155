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
import threading
import time
from collections import defaultdict, deque

from gate import __version__
from gate.boxoffice.keys import load_public_key
from gate.boxoffice.staff import StaffVerifier
from gate.bus import messages, topics, values
from gate.bus.client import guarded, make_client, read_secret
from gate.bus.limits import Drops
from gate.core.clock import now_ms
from gate.core.errors import ConfigError, GateError
from gate.core.events import ScanEvent
from gate.core.storage import HouseFiles
from gate.house import attendance, checkout, discovery, uploads
from gate.house.counts import HouseCounts
from gate.house.doors import DoorWatch
from gate.house.gaps import MAX_GATES, GapTracker
from gate.house.ingest import Ingest
from gate.house.lists import HouseLists
from gate.house.log import AttendanceLog
from gate.house.venuemode import VenueMode

log = logging.getLogger(__name__)

PUBLISH_EVERY = 0.25   # retained house topics: at most four updates a second
MAX_INBOX = 100_000    # unacknowledgeable (QoS 0) messages waiting beyond this are dropped and counted
DISCOVERY_EVERY = 60.0  # s between bringing Home Assistant's entities in line with tonight's events
HA_SENSOR_CONFIGS = "homeassistant/sensor/+/config"

class HouseService:
    def __init__(self, cfg):
        self.cfg = cfg
        self.venue = cfg.house.venue
        self.log = AttendanceLog(HouseFiles.of(cfg.storage.dir).log)
        self.db = self.log.db
        self.pretix = None                 # the link to pretix, made in start() when [pretix] url is set
        if cfg.pretix.url:
            # Queued for pretix in the transaction that logs the scan: never one without the other.
            self.db.executescript(uploads.SCHEMA)
            self.log.on_store = uploads.enqueue
        self.counts = HouseCounts()
        self.rehearsal = HouseCounts()         # `test` scans: shown apart, never in the house count
        self.lookups: dict[str, int] = defaultdict(int)   # `info` scans per event: never counted
        self.checkout = checkout.CheckOut(self.db, cfg.house.checkout)
        self.venue_mode = VenueMode(self.db, StaffVerifier([load_public_key(p) for p in cfg.signing.staff_keys]))
        self.ids: set[tuple[str, str]] = set()   # (gate, event id) stored
        self.holders: dict[str, tuple] = {}
        self.lists = HouseLists(cfg)
        self.gates: dict[str, dict] = {}
        self.doors = DoorWatch()           # instance ids, two devices under one id, mode vs the venue's
        self.drops = Drops(log, "message")   # dropped by kind: shown as `malformed` in /api/house
        self.duplicates = 0
        self.gaps = GapTracker()
        self._lost_logged = 0
        self._asks_logged = self._lost_logged_at = -1e9
        # Hand-offs between paho's network thread and the worker: deques (atomic append and
        # popleft), no locks. Acks are sent from the network thread where possible: from any
        # other thread each one has to wake paho's loop with a syscall.
        self.inbox: deque = deque()
        self.ready_acks: deque = deque()
        self._acks_since = 0.0
        self.dirty: set[str] = set(cfg.house.capacity)
        self.lock = threading.Lock()      # guards counts/gates for the HTTP threads
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._worker, name="house", daemon=True)
        self.http = None
        self.connected = threading.Event()
        self._announced: set[str] = set()           # gates announced this session
        self._events_announced: set[str] = set()    # events whose sensors we announced this session
        self._ha_configs: dict[str, set] = {}       # event object id -> our retained config topics seen
        self._discovery_at = 0.0                    # when to bring Home Assistant's entities in line
        self._load()
        self.ingest = Ingest(self)
        cid = cfg.house.client_id or f"house-{self.venue}"
        # The will carries no ts (the broker sends it when we die; a ts from now would be older
        # than our `online`): receivers use the time they received it.
        will = (topics.house_status(self.venue), json.dumps({"state": "offline", "version": __version__}), 1, True)
        self.client = make_client(cfg.mqtt, cid, clean_session=False, manual_ack=True, will=will)
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
            self.ids.add((e.gate, e.id))
            if e.gate != checkout.GATE:
                self.gaps.track(e.gate, e.seq)
            self._count(e)
            n += 1
        if n:
            log.info("restored %d scan events from the attendance log", n)

    # -- MQTT (network thread: record and hand on) ----------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.report.on_connect(reason_code)   # says why once, if the broker said no
        if reason_code.is_failure:
            return
        log.info("connected (session present: %s)", flags.session_present)
        client.publish(topics.house_status(self.venue), json.dumps(
            {"state": "online", "version": __version__, "ts": now_ms()}), qos=1, retain=True)
        # The whole venue tree, so that malformed topic shapes are seen and counted too; and the
        # retained sensor configs, to remove ours that should no longer exist.
        client.subscribe([(topics.venue_all(self.venue), 1), (HA_SENSOR_CONFIGS, 0)])
        self._events_announced.clear()
        self._discovery_at = time.monotonic() + 2.0   # once the retained configs have arrived
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        client.report.on_disconnect(reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self._flush_acks()
        if msg.topic.startswith("homeassistant/"):   # subscribed at QoS 0: nothing to acknowledge
            return self._ha_config_seen(msg.topic, msg.payload)
        if msg.qos == 0 and len(self.inbox) > MAX_INBOX:
            # QoS 1 deliveries are bounded by the broker (they wait for our acks); QoS 0 ones are not.
            return self.drops.add("house_busy", msg.topic)
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
    def _handle_batch(self, batch) -> None:
        new, acks = self.ingest.sort(batch)
        self._commit(new, acks)

    def _commit(self, new, acks) -> None:
        stored, more = self.ingest.store(new)
        acks += more
        if stored and self.pretix:
            self.pretix.wake()
        if stored:
            with self.lock:
                for gate in {e.gate for e in stored}:
                    self._seen(gate)
                for e in stored:
                    if e.gate != checkout.GATE:
                        self.gaps.track(e.gate, e.seq)
                    if e.result == "admitted" and e.event and e.event not in self._events_announced:
                        self._discovery_at = min(self._discovery_at or 1e18, time.monotonic())  # tonight's: announce
                    try:
                        self._count(e)
                    except Exception as exc:   # stored; it counts after the next restart
                        self.drops.add("internal_error", topics.scan(self.venue, e.gate), repr(exc))
        if acks:   # only now, with the events on disk
            self.ready_acks.extend(acks)
            self._acks_since = time.monotonic()

    def _count(self, e: ScanEvent) -> None:
        """Live scans count; rehearsal scans are kept apart; look-ups are only tallied."""
        holder = self.holders.get(e.ticket, ("",))[0]
        if e.mode == "info":
            self.lookups[e.event] += 1
            self.dirty.add("")
        elif e.mode == "test":
            self.rehearsal.add(e, holder)
            self.dirty.add("")
        else:
            self.dirty.add(self.counts.add(e, holder))
            self.checkout.note(e)

    def apply_control(self, payload: bytes) -> None:
        """The venue's mode (gate/house/venuemode.py); going live clears the rehearsal counts."""
        if self.venue_mode.apply(payload) == "live":
            with self.lock:
                self.rehearsal = HouseCounts()
        self.dirty.add("")

    def _apply_checkout(self) -> None:
        """At the check-out time, everyone still inside leaves (gate/house/checkout.py)."""
        with self.lock:
            boundary, leaving = self.checkout.due(self.counts, self.ids)
        if not boundary:
            return
        self.log.add(leaving)
        with self.lock:
            for e in leaving:
                self.ids.add((e.gate, e.id))
                self._count(e)
        self.checkout.done(boundary)
        if leaving:
            log.info("check-out: %d still inside counted as left", len(leaving))

    def _ask_for_gaps(self) -> None:
        """Ask each gate, over its resend topic, for events the broker never handed us
        (say it was killed between acknowledging a gate and delivering to us)."""
        if not self.connected.is_set():
            return
        with self.lock:
            due = self.gaps.due()
            lost = sum(self.gaps.lost(g) for g in self.gaps.gates)
        now = time.monotonic()
        # Logged at most every 30 s: a line per gate and pass would flood the log under attack.
        if lost > self._lost_logged and now - self._lost_logged_at >= 30.0:
            self._lost_logged_at = now
            log.error("%d event(s) never arrived and their gates no longer have them (%d in all)",
                      lost - self._lost_logged, lost)
            self._lost_logged = lost
        if due and now - self._asks_logged >= 30.0:
            self._asks_logged = now
            log.warning("asking %d gate(s) again for %d missing event(s) (logged at most every 30 s)",
                        len(due), sum(len(s) for s in due.values()))
        for gate, seqs in due.items():
            self.client.publish(topics.resend(self.venue, gate), messages.pack_resend(seqs), qos=1)

    def _seen(self, gate: str) -> bool:
        """Note a gate as seen; False for a gate beyond MAX_GATES (forged ids, counted, not tracked)."""
        g = self.gates.get(gate)
        if g is None:
            if len(self.gates) >= MAX_GATES:
                self.drops.add("gates_over_cap", gate)
                return False
            g = self.gates[gate] = {"gate": gate, "state": "unknown"}
        g["last_seen"] = now_ms()
        return True

    def gate_report(self, gate: str, kind: str, obj: dict) -> None:
        """A gate's validated status or health message."""
        with self.lock:
            if not self._seen(gate):
                return
            g = self.gates[gate]
            if kind == "status":
                # `since` is when we heard it: a last will carries no ts of its own (see link.py).
                g.update(state=obj["state"], profile=obj["profile"], version=obj["version"], since=now_ms(),
                         mode=obj["mode"], out_of_order=obj["out_of_order"])
                self.doors.status(gate, obj)
                self._announce_gate(gate)
            else:
                g["health"] = obj
        self.dirty.add("")

    def apply_tickets(self, payload) -> None:
        if not payload:
            return
        tickets = self.lists.read(payload)   # None: not a newer list signed by a key we trust (counted)
        if tickets is None:
            return
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
            # Each step guarded on its own: this thread must outlive anything a message can do.
            if batch:
                self._guard(self._handle_batch, batch)
            held = self.ingest.retry_due()
            if held:
                self._guard(self._commit, held, [])
            now = time.monotonic()
            if now - last_gaps >= 1.0:
                last_gaps = now
                self._guard(self._ask_for_gaps)
                self._guard(self._apply_checkout)
            if self._discovery_at and now >= self._discovery_at and self.connected.is_set():
                self._discovery_at = now + DISCOVERY_EVERY
                self._guard(self._tidy_discovery)
            if self.dirty and now - last_pub >= PUBLISH_EVERY:
                last_pub = now
                self._guard(self._publish)

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.drops.add("internal_error", fn.__name__, repr(exc))
            log.debug("%s failed", fn.__name__, exc_info=True)

    def _publish(self) -> None:
        with self.lock:
            dirty, self.dirty = self.dirty, set()
            caps = self.cfg.house.capacity
            snaps = [self.counts.snapshot(ev, caps.get(ev)) for ev in dirty if ev]
        if self.connected.is_set():
            for s in snaps:
                if not values.is_topic_level(s["event"]):
                    continue   # never a topic wildcard (stored events and config are checked; this is the last line)
                self.client.publish(topics.house(self.venue, s["event"]), json.dumps(s), qos=1, retain=True)
                self.client.publish(topics.house_inside(self.venue, s["event"]), str(s["inside"]), qos=1, retain=True)
        else:
            with self.lock:
                self.dirty |= dirty   # publish once the broker is back
        doors = self.doors.changed(self.venue_mode.mode)
        if doors is not None:
            if self.connected.is_set():
                self.client.publish(topics.house_doors(self.venue), doors, qos=1, retain=True)
            else:
                self.doors.unpublished()
        http = getattr(self, "http", None)
        if http is not None:
            http.notify()

    # -- Home Assistant discovery --------------------------------------------
    def _ha_config_seen(self, topic: str, payload: bytes) -> None:
        """Our retained sensor configs on the broker (network thread; sets of topics, bounded by events)."""
        ev = discovery.announced_event(self.venue, topic)
        if ev is None:
            return   # someone else's entity
        if payload:
            if len(self._ha_configs) < 10_000:
                self._ha_configs.setdefault(ev, set()).add(topic)
        else:
            self._ha_configs.get(ev, set()).discard(topic)

    def _tidy_discovery(self) -> None:
        """Entities for the configured events and tonight's; an empty retained config removes the rest."""
        with self.lock:
            wanted = discovery.wanted_events(self.cfg.house.capacity, self.counts.last_admission, now_ms())
        wanted = {ev for ev in wanted if values.is_topic_level(ev)}
        for ev in sorted(wanted - self._events_announced):
            self._events_announced.add(ev)
            for topic, cfg in discovery.event_sensors(self.venue, ev):
                self.client.publish(topic, json.dumps(cfg), qos=1, retain=True)
        keep = {discovery.object_id(ev) for ev in wanted}
        for ev, seen in list(self._ha_configs.items()):
            if ev not in keep and seen:
                log.info("removing the Home Assistant sensors of event %s (not configured, not tonight's)", ev)
                for topic in sorted(seen):
                    self.client.publish(topic, "", qos=1, retain=True)
                seen.clear()

    def _announce_gate(self, gate: str) -> None:
        key = "gate:" + gate
        if key in self._announced or not self.connected.is_set():
            return
        self._announced.add(key)
        for topic, cfg in (discovery.gate_connectivity(self.venue, gate), discovery.gate_problem(self.venue, gate)):
            self.client.publish(topic, json.dumps(cfg), qos=1, retain=True)

    # -- queries ---------------------------------------------------------------
    def api(self) -> dict:
        with self.lock:
            caps = self.cfg.house.capacity
            names = sorted((set(self.counts.events) | set(caps)) - {""})
            return {"venue": self.venue, "ts": now_ms(),
                    "events": [self.counts.detail(ev, caps.get(ev)) for ev in names],
                    "gates": sorted(({**g, **self.doors.view(g["gate"], self.venue_mode.mode),
                                      "missing": self.gaps.missing(g["gate"]),
                                      "unrecovered": self.gaps.lost(g["gate"])}
                                     for g in self.gates.values()), key=lambda g: g["gate"]),
                    "arrivals": list(self.counts.arrivals)[::-1][:50],
                    "rehearsal": [self.rehearsal.detail(ev) for ev in sorted(set(self.rehearsal.events) - {""})],
                    "lookups": dict(self.lookups), "mode": self.venue_mode.mode,
                    "malformed": self.drops.snapshot(), "duplicates": self.duplicates,
                    "limits": {"gates_untracked": self.gaps.untracked_gates,
                               "gaps_untracked": self.gaps.untracked_gaps,
                               "held_for_database": len(self.ingest.unstored)},
                    "ticket_lists": self.lists.report(),
                    "unattributed": self.counts.unattributed(),
                    # a damaged attendance log moved aside at start: the operator should know
                    "set_aside": [str(self.log.set_aside)] if self.log.set_aside else [],
                    **({"pretix": self.pretix.status()} if self.pretix else {})}

    def attendance(self) -> list[dict]:
        """The attendance log for the box office's CRM: one row per effective admission."""
        return attendance.rows(self.db, self.counts, self.holders)

    # -- running -----------------------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive)
        self.client.loop_start()
        self._thread.start()
        if self.cfg.pretix.url:
            from gate.house.pretix_link import PretixLink
            try:
                self.pretix = PretixLink(self)
            except (OSError, ValueError) as exc:
                raise ConfigError(self.cfg.path, "pretix.token_file", 0, str(exc)) from None
            self.pretix.start()
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
        if self.connected.is_set():   # a clean stop says so (the will is for a crash)
            try:
                self.client.publish(topics.house_status(self.venue), json.dumps(
                    {"state": "offline", "version": __version__, "ts": now_ms()}), qos=1, retain=True
                ).wait_for_publish(timeout=1)
            except (RuntimeError, ValueError):
                pass
        if self.pretix:
            self.pretix.close()
        self.client.disconnect()
        self.client.loop_stop()
        self.log.close()
