"""Rehearsal is visible wherever it applies: at the door (an idle pattern of its own, a mark after every
verdict, a banner on the display) and at the house (each door's mode from its own status, per door in
/api/house, on the dashboard's data and for Home Assistant; a door whose mode differs from the venue's
is flagged)."""

from __future__ import annotations

import io
import json
import time

import numpy as np

from gate.boxoffice.keys import load_private_key, new_keypair
from gate.boxoffice.staff import sign_control
from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.core.events import VenueControl
from gate.door.display import ConsoleDisplay
from gate.feedback import IDLE, Feedback
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import Collector, api, gate_config, publish_retained, wait_for

R, G, B, BUZ = 17, 27, 22, 23


def lit(pin, since):
    """Whether the pin was on at any moment from `since` (time.monotonic()) on, from its recorded history
    (each state's timestamp is the time since the one before; the newest change is at `_last_change`)."""
    t = pin._last_change
    for st in reversed(pin.states):
        if st.state:
            return True
        if t <= since:
            return False
        t -= st.timestamp
    return False


def door(tmp_path, mock_factory, tickets_csv):
    cfg = gate_config(tmp_path, debounce=0.0)
    new_keypair(tmp_path / "keys", "staff")
    cfg.signing.staff_keys = [str(tmp_path / "keys" / "staff.pub")]
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    screen = io.StringIO()
    fb = Feedback.from_config(cfg.feedback, mock_factory, ConsoleDisplay(screen))
    s = Scanner(cfg, MemorySource([], 0), feedback=fb, pin_factory=mock_factory, connect=False)
    return s, screen


def venue(s, tmp_path, action):
    """A signed venue control message, as the link hands it to the loop."""
    key = load_private_key(tmp_path / "keys" / "staff.key")
    s.parts.control.put(VenueControl(sign_control(key, "hall", "Stage Manager", action, int(time.time())).encode()))
    s._drain_control()
    s._update_faults()


def present(s, code):
    """One rendered ticket through the real decoder and loop; its scan event."""
    got = []
    s.on_verdict = lambda v, w, e: got.append(e)
    src = MemorySource([compose(code, "clean", rng=np.random.default_rng(3))], 0)
    src.start()
    s.process(src.read(1))
    src.close()
    assert got, code
    return got[-1]


def test_rehearsal_shows_at_the_door_while_idle_after_each_verdict_and_on_the_display(tmp_path, mock_factory,
                                                                                   tickets_csv):
    s, screen = door(tmp_path, mock_factory, tickets_csv)
    red, green, blue, buzzer = (mock_factory.pin(p) for p in (R, G, B, BUZ))
    try:
        s.capture.camera_ok = True   # frames are handed in directly, not captured
        s._update_faults()
        t0 = time.monotonic()
        time.sleep(0.5)
        assert s.feedback.idle is None and not lit(blue, t0), "a live gate idles dark"

        venue(s, tmp_path, "test")
        assert s.feedback.idle == "rehearsal"
        t0 = time.monotonic()
        wait_for(lambda: lit(green, t0) and lit(blue, t0), 4, what="the rehearsal blink while idle")
        assert not lit(red, t0)
        wait_for(lambda: "** REHEARSAL **" in screen.getvalue(), what="the banner while idle")

        t0 = time.monotonic()
        e = present(s, "CODE-0001")
        assert (e.mode, e.result) == ("test", "admitted")
        time.sleep(0.4)
        assert green.state and not blue.state and not red.state, "the verdict's own colour first"
        # then the mark: cyan with two low ticks (the idle blink is silent, a live `ok` beeps once, at once)
        wait_for(lambda: lit(buzzer, t0 + 0.5) and blue.state, 2, what="the rehearsal mark after the verdict")
        lines = [ln for ln in screen.getvalue().splitlines() if "WELCOME" in ln]
        assert lines and lines[-1].startswith("┃ ** REHEARSAL ** │ WELCOME ok"), lines

        time.sleep(1.1)   # a venue control message must be newer (whole seconds) than the last
        venue(s, tmp_path, "live")
        assert s.feedback.idle is None and s.feedback.banner is None
        time.sleep(0.6)   # whatever was playing has ended
        t0 = time.monotonic()
        e = present(s, "CODE-0005")   # no tags: nothing blue after it (an assist tag would be)
        assert (e.mode, e.result) == ("live", "admitted")
        time.sleep(0.3)
        assert green.state and lit(buzzer, t0)
        time.sleep(1.9)
        assert not lit(blue, t0) and not lit(buzzer, t0 + 0.5), "a live admission carries no rehearsal mark"
        assert screen.getvalue().splitlines()[-1].startswith("┃ WELCOME ok"), screen.getvalue()[-200:]
    finally:
        s.close()
    assert IDLE["rehearsal"] != ()


def status(port, gate, **body):
    """A gate's retained status, as that gate would publish it."""
    publish_retained(port, f"gate/hall/{gate}/status", json.dumps(
        {"state": "online", "profile": "turnstile", "version": "t", **body}), client_id=f"as-{gate}")


def gate_entry(cfg, gate):
    return next((g for g in api(cfg)["gates"] if g["gate"] == gate), None)


def test_rehearsal_each_door_mode_at_the_house_and_a_door_unlike_the_venue_is_flagged(broker, house):
    col = Collector(broker.port, "gate/hall/house/doors", "homeassistant/binary_sensor/+/config")
    try:
        wait_for(house.connected.is_set, what="house connected")
        status(broker.port, "door-a", mode="entry", venue_mode="test", instance="aaaaaaaaaaaa")   # missed `live`
        status(broker.port, "door-b", mode="entry", venue_mode="live", instance="bbbbbbbbbbbb")
        status(broker.port, "door-c", mode="test", venue_mode="live", instance="cccccccccccc")    # a rehearsal card
        status(broker.port, "door-d", mode="info", venue_mode="live", instance="dddddddddddd")    # a look-up handheld
        wait_for(lambda: all(gate_entry(house.cfg, g) for g in ("door-a", "door-b", "door-c", "door-d")),
                 what="four doors at the house")
        h = api(house.cfg)
        assert h["mode"] == "live"
        doors = {g["gate"]: g for g in h["gates"]}
        assert (doors["door-a"]["rehearsal"], doors["door-a"]["venue_mode"]) == (True, "test")
        assert "rehearsing while the venue is live" in doors["door-a"]["mode_mismatch"]
        assert doors["door-c"]["rehearsal"] and doors["door-c"]["mode"] == "test" and doors["door-c"]["mode_mismatch"]
        assert not doors["door-b"]["rehearsal"] and doors["door-b"]["mode_mismatch"] is None
        assert doors["door-d"]["mode_mismatch"] is None   # a look-up door records nothing either way

        def retained():
            got = col.on("gate/hall/house/doors")
            return json.loads(got[-1]) if got else None
        wait_for(lambda: (retained() or {}).get("door-c"), what="the doors topic")
        d = retained()
        assert d["door-a"]["problem"] and d["door-c"]["problem"] and not d["door-b"]["problem"]
        configs = {json.loads(p)["unique_id"]: json.loads(p) for t, p, _ in col.messages if t.startswith("homeassistant/")}
        ha = configs["gate_hall_door-a_problem"]
        assert ha["device_class"] == "problem" and ha["state_topic"] == "gate/hall/house/doors"
        assert "door-a" in ha["value_template"] and ha["json_attributes_topic"] == "gate/hall/house/doors"
        # The door follows the venue again: no longer flagged.
        status(broker.port, "door-a", mode="entry", venue_mode="live", instance="aaaaaaaaaaaa")
        wait_for(lambda: gate_entry(house.cfg, "door-a")["mode_mismatch"] is None, what="door-a unflagged")
        wait_for(lambda: not retained()["door-a"]["problem"], what="the doors topic follows")
    finally:
        col.close()
