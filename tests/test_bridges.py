"""Many entrances: three real Mosquittos (a core and two entrances) running exactly the configuration
`gate broker config` writes, bridged by Mosquitto's own bridges; real gates at each entrance; the house on
the core. A ticket used at one entrance is refused at the other; a bridge cut for 20 s loses nothing."""

import json
import os
import queue
import ssl
import threading
import time
import urllib.request

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.config import parse
from gate.house.build import build_house
from gate.link import GateLink
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.outbox import Outbox
from gate.state.tickets import TicketStore
from tests.bridged import free_port, start_venue
from tests.conftest import gate_config, wait_for

NOT_AUTHORIZED = 0x87
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


# -- parties ----------------------------------------------------------------------------------------------
class V5:
    """A raw MQTT v5 client as `user` on one of the venue's brokers; records PUBACK reason codes and messages."""

    def __init__(self, venue, where, user):
        self.pubacks, self.subacks, self.messages = {}, [], []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=str(venue.dirs[where] / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        self.c.username_pw_set(user, venue.password(where, user))
        self.connack = None
        self.c.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.extend(rcs)
        self.c.on_message = self._on_message
        self.c.connect("localhost", venue.ports[where])
        self.c.loop_start()
        wait_for(lambda: self.connack is not None, what=f"CONNACK for {user}")
        assert not self.connack.is_failure, (user, self.connack)

    def _on_message(self, c, u, m):
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), m.retain))

    def on(self, topic):
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def publish(self, topic, payload, retain=False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        return wait_for(lambda: self.pubacks.get(info.mid), what=f"PUBACK on {topic}")

    def subscribe(self, *topics):
        n = len(self.subacks) + len(topics)
        self.c.subscribe([(t, 1) for t in topics])
        wait_for(lambda: len(self.subacks) >= n, what=f"SUBACK {topics}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def entrance_gate(tmp_path, venue, where, gate):
    """A gate's config pointing at its own entrance's broker (TLS, its own user)."""
    text = open(gate_config(tmp_path, gate=gate).path).read()
    text = text[:text.index("[mqtt]")] + venue.mqtt(where, gate) + text[text.index("[storage]"):]
    path = tmp_path / f"{gate}.toml"
    path.write_text(text)
    return parse(text, str(path))


def core_house(tmp_path, venue):
    text = (f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\n'
            f'capacity = {{ "eve" = 1000 }}\n{venue.mqtt("core", "house")}[storage]\ndir = "{tmp_path / "house"}"\n')
    path = tmp_path / "house.toml"
    path.write_text(text)
    svc = build_house(parse(text, str(path)))
    svc.start()
    wait_for(svc.connected.is_set, what="the house connected to the core")
    return svc


def api(svc):
    with urllib.request.urlopen(f"http://{svc.cfg.house.listen}/api/house", timeout=5) as r:
        return json.load(r)


def eve(h):
    return next((e for e in h["events"] if e["event"] == "eve"), {"admitted": 0, "conflicts": []})


class Door:
    """A camera at a door: an empty doorway until a code is held up for a few frames."""

    def __init__(self):
        self.codes: queue.Queue = queue.Queue()
        self.stop = threading.Event()

    def show(self, code):
        self.codes.put(code)

    def frames(self):
        while not self.stop.is_set():
            try:
                code = self.codes.get_nowait()
            except queue.Empty:
                yield EMPTY
                continue
            frame = compose(code, "clean", rng=np.random.default_rng(len(code)))
            yield from [frame] * 3


def door_gate(cfg, pin_factory, tickets_csv):
    """A real gate (camera frames, decode, decide, outbox, link) at a Door; verdicts collected by ticket."""
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    door = Door()
    s = Scanner(cfg, MemorySource(door.frames(), 15), pin_factory=pin_factory)
    s.door, s.seen = door, queue.Queue()
    s.on_verdict = lambda v, w, e: s.seen.put((time.monotonic(), v))
    th = threading.Thread(target=s.run, daemon=True)
    th.start()
    s.thread = th
    return s


def verdict_of(s, timeout=10):
    return s.seen.get(timeout=timeout)


def stop_gate(s):
    s.door.stop.set()
    s.thread.join(20)


def test_bridge_a_gate_hears_every_lane_of_a_400_lane_venue(tmp_path, broker):
    """Used-ticket sync from 400 other gates (the issue's many entrances): a gate that stopped tracking
    senders at 256 dropped the scans of every gate beyond, and those tickets stayed usable at its door."""
    from gate.bus.codec import pack_scan
    from gate.core.events import ScanEvent
    heard = set()
    cfg = gate_config(tmp_path, gate="door-a", port=broker.port, mqtt_on=True)
    link = GateLink(cfg, tmp_path / "outbox.db", profile="turnstile", on_remote_scan=lambda e: heard.add(e.gate))
    link.start()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lanes")
    try:
        assert link.connected.wait(10)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        now = int(time.time() * 1000)
        infos = [c.publish(f"gate/hall/l{i:03d}/scan", pack_scan(ScanEvent(
            f"e{i}", f"l{i:03d}", 1, now, "eve", f"T{i}", "in", "admitted", "ok")), qos=1) for i in range(400)]
        for info in infos:
            info.wait_for_publish(10)
        wait_for(lambda: len(heard) == 400, what=f"all 400 lanes heard (heard {len(heard)})")
        assert not link.drops.snapshot()
    finally:
        c.disconnect()
        c.loop_stop()
        link.close(drain_s=0)


# -- three brokers ----------------------------------------------------------------------------------------
def test_bridge_carries_each_message_once_and_only_what_each_side_needs(tmp_path):
    v = start_venue(tmp_path, ["door-a", "door-a2"], ["door-b", "door-b2"], core_gates=["door-x"])
    parties = []

    def party(where, user, *subs):
        p = V5(v, where, user)
        parties.append(p)
        if subs:
            p.subscribe(*subs)
        return p
    try:
        v.wait_bridged()
        house = party("core", "house", "gate/hall/#")
        a2 = party("a", "door-a2", "gate/hall/+/scan", "gate/hall/tickets")
        b2 = party("b", "door-b2", "gate/hall/+/scan", "gate/hall/tickets")
        door_a = party("a", "door-a", "gate/hall/door-a/resend")
        door_x, box = party("core", "door-x"), party("core", "boxoffice")
        door_b = party("b", "door-b")
        scans = {"A": (door_a, "door-a"), "B": (door_b, "door-b"), "X": (door_x, "door-x")}
        for name, (p, gate) in scans.items():
            assert not p.publish(f"gate/hall/{gate}/scan", f"{name}1".encode()).is_failure
        assert not door_a.publish("gate/hall/door-a/status", b'{"state":"online"}', retain=True).is_failure
        assert not box.publish("gate/hall/tickets", b"LIST-1", retain=True).is_failure
        assert not box.publish("gate/hall/control", b"GC1:LIVE", retain=True).is_failure
        assert not house.publish("gate/hall/door-a/resend", b'{"seqs":[1]}').is_failure
        assert not house.publish("gate/hall/house/eve/inside", b"7", retain=True).is_failure
        # Every scan reaches the house once and every entrance once, whichever broker it was published on.
        for who in (house, a2, b2):
            for name, (_, gate) in scans.items():
                topic = f"gate/hall/{gate}/scan"
                wait_for(lambda w=who, t=topic: w.on(t), what=f"{name}1 at {who.c._client_id}")
        wait_for(lambda: door_a.on("gate/hall/door-a/resend"), what="the house's resend request at door-a")
        wait_for(lambda: b2.on("gate/hall/tickets"), what="the ticket list at entrance B")
        # A marker after everything: what was to come twice (an echo down the bridge it came up) has come.
        door_a.publish("gate/hall/door-a/scan", b"END")
        for who in (house, a2, b2):
            wait_for(lambda w=who: b"END" in w.on("gate/hall/door-a/scan"), what="the marker")
        time.sleep(0.5)
        for who in (house, a2, b2):
            for name, (_, gate) in scans.items():
                assert who.on(f"gate/hall/{gate}/scan").count(f"{name}1".encode()) == 1, (who.c._client_id, name)
        assert house.on("gate/hall/door-a/status") == [b'{"state":"online"}']
        # Gates that start later find the list and the control message retained at their own entrance,
        # and the core keeps the entrance gate's retained status.
        b2.close()
        parties.remove(b2)
        late = party("b", "door-b2", "gate/hall/tickets", "gate/hall/control")
        wait_for(lambda: ("gate/hall/tickets", b"LIST-1", True) in late.messages
                 and ("gate/hall/control", b"GC1:LIVE", True) in late.messages, what="retained at entrance B")
        dash = party("core", "dashboard", "gate/hall/+/status")
        wait_for(lambda: ("gate/hall/door-a/status", b'{"state":"online"}', True) in dash.messages,
                 what="door-a's retained status on the core")
        # Nothing else crosses: the house's counts stay on the core, door-a's resend at entrance A.
        assert not [m for m in a2.messages + late.messages if "/house/" in m[0] or m[0].endswith("/resend")]
        # On the core the bridge's user speaks for its own gates only (checked with entrance A down, so
        # this client does not push the bridge off its client id).
        v.brokers["a"].stop()
        as_bridge = party("core", "entrance-a")
        assert not as_bridge.publish("gate/hall/door-a/scan", b"OWN").is_failure
        for topic in ("gate/hall/door-x/scan", "gate/hall/door-b/scan", "gate/hall/tickets", "gate/hall/control",
                      "gate/hall/house/eve/inside", "gate/hall/door-b/resend", "gate/hall/pretix/scan"):
            assert as_bridge.publish(topic, b"FORGED").value == NOT_AUTHORIZED, topic
    finally:
        for p in parties:
            p.close()
        v.stop()


def test_bridge_ticket_used_at_one_entrance_is_already_used_at_the_other(tmp_path, mock_factory, tickets_csv):
    """Screenshot fraud across entrances: the same ticket shown at entrance B after entrance A admitted it."""
    from gpiozero.pins.mock import MockFactory
    v = start_venue(tmp_path, ["door-a"], ["door-b"])
    house, gates = None, []
    try:
        v.wait_bridged()
        house = core_house(tmp_path, v)
        a = door_gate(entrance_gate(tmp_path, v, "a", "door-a"), mock_factory, tickets_csv)
        gates.append(a)
        b = door_gate(entrance_gate(tmp_path, v, "b", "door-b"), MockFactory(), tickets_csv)
        gates.append(b)
        wait_for(lambda: a.link.connected.is_set() and b.link.connected.is_set(), what="gates at their entrances")
        a.door.show("CODE-0001")
        t_admit, verdict = verdict_of(a)
        assert verdict.reason == "ok"
        wait_for(lambda: b.store.history("T1").inside, 5, step=0.005, what="door-a's admission at entrance B")
        took = time.monotonic() - t_admit
        assert took < 1.0, f"{took:.3f} s from entrance A to entrance B"
        b.door.show("CODE-0001")
        _, verdict = verdict_of(b)
        assert verdict.reason == "already_used" and "door-a" in verdict.detail, verdict
        # The house on the core counts the admission once and the refusal once: nothing came twice.
        h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == 1 and eve(h)["rejected"] == 1 else None)(api(house)),
                     what="the house's count")
        assert h["duplicates"] == 0 and eve(h)["conflicts"] == [] and eve(h)["inside"] == 1
    finally:
        for s in gates:
            stop_gate(s)
        if house:
            house.close()
        v.stop()


class Lane:
    """A busy lane's real outbox and link at an entrance; keeps the ids of other gates' scans it hears."""

    def __init__(self, cfg):
        self.heard, self.lock = set(), threading.Lock()
        self.outbox = Outbox(os.path.join(cfg.storage.dir, "outbox.db"))
        self.link = GateLink(cfg, os.path.join(cfg.storage.dir, "outbox.db"), profile="turnstile",
                             on_remote_scan=self._heard)
        self.gate = cfg.gate.id
        self.admitted = []
        # Stamped a second apart from an hour ago, as one lane passes them: pumped faster than a lane could,
        # they would be judged implausible (gate/core/lane.py) and never counted.
        self.stamp = int(time.time() * 1000) - 3_600_000
        self.link.start()

    def _heard(self, msg):
        with self.lock:
            self.heard.add(msg.ticket)

    def admit(self, ticket):
        self.stamp += 1000
        self.outbox.append(self.gate, self.stamp, "eve", ticket, "in", "admitted", "ok")
        self.admitted.append(ticket)

    def close(self):
        self.link.close()
        self.outbox.close()


@pytest.mark.slow
def test_bridge_cut_for_20_s_then_healed_counts_exactly_and_flags_the_conflict(tmp_path, mock_factory,
                                                                               tickets_csv):
    from gpiozero.pins.mock import MockFactory
    v = start_venue(tmp_path, ["door-a", "lane-a"], ["door-b", "lane-b"])
    house, gates, lanes = None, [], []
    try:
        v.wait_bridged()
        house = core_house(tmp_path, v)
        a = door_gate(entrance_gate(tmp_path, v, "a", "door-a"), mock_factory, tickets_csv)
        gates.append(a)
        b = door_gate(entrance_gate(tmp_path, v, "b", "door-b"), MockFactory(), tickets_csv)
        gates.append(b)
        lane_a, lane_b = Lane(entrance_gate(tmp_path, v, "a", "lane-a")), Lane(entrance_gate(tmp_path, v, "b", "lane-b"))
        lanes += [lane_a, lane_b]
        wait_for(lambda: all(x.link.connected.is_set() for x in (a, b, lane_a, lane_b)), what="all at their entrances")
        stop = threading.Event()

        def busy(lane, prefix):   # 20 admissions a second at each entrance, before, during and after the cut
            i = 0
            while not stop.is_set():
                lane.admit(f"{prefix}{i}")
                i += 1
                time.sleep(0.05)
        pumps = [threading.Thread(target=busy, args=(lane_a, "A"), daemon=True),
                 threading.Thread(target=busy, args=(lane_b, "B"), daemon=True)]
        for p in pumps:
            p.start()
        wait_for(lambda: len(lane_a.heard) > 20 and len(lane_b.heard) > 20, what="traffic across the bridges")
        v.cut_b.cut()
        cut_at = time.monotonic()
        # Both sides keep deciding: the same ticket is admitted at each, neither knowing of the other.
        a.door.show("CODE-0002")
        assert verdict_of(a)[1].reason == "ok"
        b.door.show("CODE-0002")
        assert verdict_of(b)[1].reason == "ok"
        time.sleep(max(0.0, 2 - (time.monotonic() - cut_at)))   # what was already past the link has landed
        heard_b = len(lane_b.heard)
        time.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))
        assert b.link.connected.is_set() and lane_b.link.connected.is_set(), "entrance B's gates stay connected"
        assert len(lane_b.heard) == heard_b, "nothing crossed the cut link"
        connects = v.brokers["core"].bridge_connects("entrance-b")
        v.cut_b.heal()
        v.wait_bridged(at_least={"entrance-b": connects + 1})
        time.sleep(2)
        stop.set()
        for p in pumps:
            p.join()
        # Every admission reaches the house once and the other entrance's gates.
        total = len(lane_a.admitted) + len(lane_b.admitted) + 1
        h = wait_for(lambda: (lambda h: h if eve(h)["admitted"] == total else None)(api(house)), 30,
                     what=f"{total} admitted at the house")
        wait_for(lambda: set(lane_b.admitted) <= lane_a.heard and set(lane_a.admitted) <= lane_b.heard, 20,
                 what="each entrance heard every admission of the other")
        wait_for(lambda: "T2" in lane_a.heard and "T2" in lane_b.heard and b.store.history("T2").first_gate == "door-a",
                 what="each door's use of T2 at the other entrance")
        # The ticket used on both sides while the link was down is flagged, once.
        [c] = eve(h)["conflicts"]
        assert c["ticket"] == "T2" and {c["gate"], c["first_gate"]} == {"door-a", "door-b"}
        time.sleep(1)
        assert eve(api(house))["admitted"] == total
    finally:
        for s in gates:
            stop_gate(s)
        for lane in lanes:
            lane.close()
        if house:
            house.close()
        v.stop()
