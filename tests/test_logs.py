"""Logs tell routine from attack: a restart or a reconnect (the retained control message and ticket list
heard again, an older genuine one) is quiet or INFO; an unsigned, wrongly signed or malformed message is
a WARNING with its reason and how many such have come."""

from __future__ import annotations

import logging
import threading
import time

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.keys import load_private_key, new_keypair
from gate.boxoffice.staff import sign_card, sign_control
from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.core.events import Ticket
from gate.house.build import build_house
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from gate.state.updater import ListGuard, TicketUpdater
from tests.conftest import api, gate_config, house_config, publish_raw, publish_retained, wait_for

EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def staff_key(tmp_path):
    new_keypair(tmp_path / "keys", "staff")
    return load_private_key(tmp_path / "keys" / "staff.key"), str(tmp_path / "keys" / "staff.pub")


def control(key, action, issued=None):
    return sign_control(key, "hall", "Stage Manager", action, issued or int(time.time())).encode()


def publish_control(port, payload):
    publish_retained(port, "gate/hall/control", payload)


def loud(caplog, prefix):
    return [r for r in caplog.records if r.name.startswith(prefix) and r.levelno >= logging.WARNING]


FORGERIES = {
    "signed by a key this venue does not trust": lambda key: control(Ed25519PrivateKey.generate(), "test"),
    "malformed (not Base45)": lambda key: b"GC1:not base45 at all!",
    "a staff card sent as a control message": lambda key: sign_card(key, "hall", "Jo", "test", int(time.time()),
                                                                    int(time.time()) + 3600).encode(),
    "malformed (not ASCII)": lambda key: "GC1:\u00e9".encode(),
}


def test_logs_house_restart_is_quiet_forged_control_messages_warn(tmp_path, broker, caplog):
    key, pub = staff_key(tmp_path)
    cfg = house_config(tmp_path, broker.port, signing=f'[signing]\nstaff_keys = ["{pub}"]\n')
    caplog.set_level(logging.DEBUG)
    house = build_house(cfg)
    house.start()
    try:
        wait_for(house.connected.is_set, what="house connected")
        publish_control(broker.port, control(key, "test"))
        wait_for(lambda: api(cfg)["mode"] == "test", what="the venue in rehearsal")
    finally:
        house.close()
    # A restart: its own retained control message comes back, and an older genuine one is replayed.
    caplog.clear()
    house = build_house(cfg)
    house.start()
    try:
        wait_for(house.connected.is_set, what="house connected again")
        wait_for(lambda: [r for r in caplog.records if "venue control message again" in r.getMessage()],
                 what="the retained message heard again")
        assert api(cfg)["mode"] == "test"
        publish_raw(broker.port, "gate/hall/control", [control(key, "live", int(time.time()) - 3600)])
        wait_for(lambda: [r for r in caplog.records if "an older venue control message" in r.getMessage()],
                 what="the older one seen")
        assert [r.levelno for r in caplog.records if "older venue control" in r.getMessage()] == [logging.INFO]
        assert not loud(caplog, "gate.house"), [r.getMessage() for r in loud(caplog, "gate.house")]
        assert not loud(caplog, "gate.boxoffice"), [r.getMessage() for r in loud(caplog, "gate.boxoffice")]
        # Forgeries: each a WARNING naming why, with the count.
        for why, make in FORGERIES.items():
            publish_raw(broker.port, "gate/hall/control", [make(key)])
            wait_for(lambda why=why: [r for r in loud(caplog, "gate") if why in r.getMessage()], what=why)
        publish_raw(broker.port, "gate/hall/control", [FORGERIES["malformed (not Base45)"](key)])
        wait_for(lambda: house.venue_mode.refused == 7, what="all refused (2 routine, 5 forged)")
        said = [r.getMessage() for r in loud(caplog, "gate")]
        assert len(said) == 4, said   # the second of a kind is counted, not logged again within a minute
        assert all("refused a venue control message" in m for m in said)
        assert "(1 such so far; 4 refused in all)" in said[-1]
        assert house.venue_mode.refusals.counts["malformed (not Base45)"] == 2
        assert api(cfg)["mode"] == "test"
    finally:
        house.close()


def test_logs_gate_reconnect_is_quiet_forged_control_message_warns(tmp_path, broker, mock_factory, tickets_csv,
                                                                   caplog):
    key, pub = staff_key(tmp_path)
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True)
    cfg.signing.staff_keys = [pub]
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    publish_control(broker.port, control(key, "test"))
    caplog.set_level(logging.DEBUG)
    stop = threading.Event()

    def frames():   # an empty view until the test ends
        while not stop.is_set():
            time.sleep(0.05)
            yield EMPTY
    s = Scanner(cfg, MemorySource(frames(), 0), pin_factory=mock_factory, stop=stop)
    th = threading.Thread(target=s.run)
    th.start()
    try:
        wait_for(lambda: s.modes.venue == "test", what="the retained rehearsal switch applied")
        assert [r.levelno for r in caplog.records if "venue in rehearsal" in r.getMessage()] == [logging.INFO]
        # The broker restarts: the gate reconnects and hears the same retained message again.
        caplog.clear()
        broker.stop()
        broker.start()
        wait_for(lambda: [r for r in caplog.records if "venue control message again" in r.getMessage()], 20,
                 what="the retained message after the reconnect")
        assert not loud(caplog, "gate"), [r.getMessage() for r in loud(caplog, "gate")]
        assert [r.levelno for r in caplog.records if "disconnected from broker" in r.getMessage()] == [logging.INFO]
        publish_raw(broker.port, "gate/hall/control", [control(Ed25519PrivateKey.generate(), "live")])
        wait_for(lambda: loud(caplog, "gate"), what="the forgery warned")
        [w] = loud(caplog, "gate")
        assert "refused a venue control message: signed by a key this venue does not trust" in w.getMessage()
        assert "(1 such so far" in w.getMessage() and s.modes.venue == "test"
    finally:
        stop.set()
        th.join(15)


def test_logs_stale_ticket_lists_are_info_forged_ones_warn(tmp_path, venue_keys, caplog):
    store = TicketStore(tmp_path / "tickets.db")
    guard = ListGuard("hall", [venue_keys.key.public_key()], venue_keys.secret)
    u = TicketUpdater(tmp_path / "tickets.db", guard=guard)
    tickets = [Ticket("T1", "eve", "123456"), Ticket("T2", "eve", "654321")]
    first, second = venue_keys.pack(tickets, seq=1), venue_keys.pack(tickets[:1], seq=2)
    caplog.set_level(logging.DEBUG, "gate.state.updater")
    try:
        assert u.apply(store, first) and u.apply(store, second)
        caplog.clear()
        assert not u.apply(store, second)   # the retained list on every reconnect
        assert not u.apply(store, first)    # an older genuine one
        said = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert [lv for lv, _ in said] == [logging.DEBUG, logging.INFO], said
        assert "already applied" in said[0][1] and "(replayed)" in said[1][1]
        caplog.clear()
        stranger = venue_keys.pack(tickets, seq=9, key=Ed25519PrivateKey.generate())
        unsigned = msgpack.packb({"v": 1, "version": 9, "zlib": b""})
        for bad in (stranger, unsigned, b"\xc1"):
            assert not u.apply(store, bad)
        assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3
    finally:
        store.close()
