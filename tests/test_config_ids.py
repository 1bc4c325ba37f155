"""Ids in a config are the ids on the bus: whatever `gate config check` passes, every receiver accepts.

A gate id, venue or event id that a receiver drops (too long, a reserved topic word) once passed the
check, and the gate then ran with every scan it published dropped by the house."""

import inspect
import json
import os
import tempfile
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gate.bus import topics, values
from gate.bus.codec import pack_scan, unpack_scan
from gate.config import parse
from gate.core import ids
from gate.core.errors import ConfigError
from gate.core.events import ScanEvent
from gate.house.ingest import Ingest
from gate.house.log import AttendanceLog
from gate.house.state import HouseState
from tests.conftest import run_gate_cli

GATE = '[gate]\nid = {id}\nvenue = {venue}\nevents = [{events}]\n[mqtt]\nenabled = false\n'
HOUSE = '[house]\nvenue = {venue}\n[house.capacity]\n{capacity}\n[mqtt]\nenabled = false\n'
q = json.dumps   # a TOML basic string (JSON's escapes are TOML's)

REFUSED = [
    # (config text, key named, line, a word the message must carry)
    (GATE.format(id=q("a" * 65), venue=q("hall"), events=""), "gate.id", 2, "64"),
    (GATE.format(id=q("house"), venue=q("hall"), events=""), "gate.id", 2, "reserved"),
    (GATE.format(id=q("tickets"), venue=q("hall"), events=""), "gate.id", 2, "reserved"),
    (GATE.format(id=q("control"), venue=q("hall"), events=""), "gate.id", 2, "reserved"),
    (GATE.format(id=q("boxoffice"), venue=q("hall"), events=""), "gate.id", 2, "reserved"),
    (GATE.format(id=q("pretix"), venue=q("hall"), events=""), "gate.id", 2, "pretix"),
    (GATE.format(id=q("door-a\n"), venue=q("hall"), events=""), "gate.id", 2, "letters"),
    (GATE.format(id=q("door-a"), venue=q("h" * 65), events=""), "gate.venue", 3, "64"),
    (GATE.format(id=q("door-a"), venue=q("hall"), events='"eve", "status"'), "gate.events", 4, "reserved"),
    (GATE.format(id=q("door-a"), venue=q("hall"), events='"alerts"'), "gate.events", 4, "reserved"),
    (GATE.format(id=q("door-a"), venue=q("hall"), events=q("e" * 129)), "gate.events", 4, "128"),
    (HOUSE.format(venue=q("hall"), capacity='eve = 10\nalerts = 5'), "house.capacity.alerts", 5, "reserved"),
    (HOUSE.format(venue=q("hall"), capacity='status = 5'), "house.capacity.status", 4, "reserved"),
    (GATE.format(id=q("door-a"), venue=q("hall"), events="") + '[pretix.items]\n"7" = "alerts"\n',
     "pretix.items.7", 8, "reserved"),
]


@pytest.mark.parametrize("text,key,line,word", REFUSED, ids=[f"{r[1]}:{r[0].split(chr(10))[1][:24]}" for r in REFUSED])
def test_config_ids_the_bus_would_drop_are_refused_by_config_check(tmp_path, text, key, line, word):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{p}:{line}: {key}: " in r.stderr and word in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_config_ids_at_the_bounds_pass_config_check(tmp_path):
    p = tmp_path / "ok.toml"
    p.write_text(GATE.format(id=q("a" * 64), venue=q("v" * 64), events=q("e." * 64)))
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 0, r.stderr


def test_config_ids_every_fixed_topic_level_is_reserved():
    """A topic that topics.py builds with a fixed level where a gate id (or, under house/, an event id)
    would stand makes that level a reserved word; a new topic that is not reserved fails here."""
    fixed_gate_levels, fixed_event_levels = set(), set()
    for name, fn in inspect.getmembers(topics, inspect.isfunction):
        params = inspect.signature(fn).parameters
        if fn.__module__ != topics.__name__ or "venue" not in params or name.startswith("_"):
            continue   # not a topic: another module's function, or one of topics.py's own helpers
        args = {"venue": "VENUE", "gate": "GATE", "event": "EVENT"}
        parts = fn(**{k: args[k] for k in params}).split("/")
        assert parts[:2] == [topics.ROOT, "VENUE"], name
        if len(parts) > 2 and parts[2] not in ("GATE", "+", "#"):
            fixed_gate_levels.add(parts[2])
        if len(parts) > 3 and parts[2] == ids.HOUSE and parts[3] not in ("EVENT", "+", "#", ""):
            fixed_event_levels.add(parts[3])
    assert {ids.HOUSE, ids.TICKETS, ids.CONTROL} <= fixed_gate_levels
    assert fixed_gate_levels <= set(ids.RESERVED_GATE_IDS)
    assert {ids.STATUS, ids.ALERTS, ids.DOORS, ids.ACTIVE} <= fixed_event_levels
    assert fixed_event_levels <= set(ids.RESERVED_EVENTS)


def test_config_ids_broker_config_refuses_the_same_gate_ids(tmp_path):
    for gate in ("tickets", "pretix", "a" * 65):
        r = run_gate_cli("broker", "config", "--venue", "hall", "--gates", gate, "--out", str(tmp_path / "b"),
                         "--host", "localhost")
        assert r.returncode == 2 and "Traceback" not in r.stderr, (gate, r.stderr)
        assert not (tmp_path / "b" / "passwd").exists()


# -- the property: a config that parses names only ids the bus accepts -------------------------------

ID_CHARS = "aZ09_-"
RESERVED = sorted(set(ids.RESERVED_GATE_IDS) | set(ids.RESERVED_EVENTS))
WORDS = RESERVED + ["door-a", "hall", "eve", "+", "#", ""]
ids_near_bounds = st.one_of(
    st.sampled_from(RESERVED),
    st.sampled_from(WORDS),
    st.text(ID_CHARS, min_size=ids.ID_MAX - 2, max_size=ids.ID_MAX + 2),
    st.text(ID_CHARS + ".:/+# \n\u00e9", min_size=0, max_size=6),
    st.sampled_from(WORDS).map(lambda w: w + "\n"),
)
events_near_bounds = st.one_of(
    st.sampled_from(RESERVED),
    st.sampled_from(WORDS),
    st.text(ID_CHARS + ".:", min_size=ids.EVENT_MAX - 2, max_size=ids.EVENT_MAX + 2),
    st.text(ID_CHARS + ".:/+# \n", min_size=0, max_size=6),
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _house_receiver(venue: str, attendance):
    """The house's own receiving code (gate/house/ingest.py) with the house's real state, for this venue."""
    cfg = parse(HOUSE.format(venue=q(venue), capacity=""))
    state = HouseState(cfg.house.capacity)
    return Ingest(venue, state, attendance, on_tickets=lambda *a: None, on_control=lambda *a: None,
                  on_report=lambda *a: None), state


def _assert_bus_takes_a_scan(venue: str, gate: str, event: str) -> None:
    topic = topics.scan(venue, gate)
    assert values.is_id(venue) and values.is_id(gate), (venue, gate)
    assert topics.gate_of(topic) == gate and not topic.startswith(topics.house_prefix(venue)), topic
    e = ScanEvent(id="e1", gate=gate, seq=1, ts=int(time.time() * 1000), event=event, ticket="T1", dir="in",
                  result="admitted", reason="ok")
    assert unpack_scan(pack_scan(e)) == e
    with tempfile.TemporaryDirectory() as d:
        attendance = AttendanceLog(os.path.join(d, "house.db"))
        try:
            ingest, state = _house_receiver(venue, attendance)
            got = ingest._one(topic, pack_scan(e))
        finally:
            attendance.db.close()
    assert got == e and state.drops.total() == 0, (topic, event, state.drops.snapshot())


@PROPERTY
@given(gate=ids_near_bounds, venue=ids_near_bounds, events=st.lists(events_near_bounds, max_size=3),
       mapped=events_near_bounds)
def test_config_ids_every_gate_config_that_parses_is_heard_by_the_bus(gate, venue, events, mapped):
    text = GATE.format(id=q(gate), venue=q(venue), events=", ".join(map(q, events)))
    text += f'[pretix.items]\n"7" = {q(mapped)}\n'
    try:
        cfg = parse(text)
    except ConfigError:
        return
    for ev in [""] + cfg.gate.events + list(cfg.pretix.items.values()):   # "": a code of no known event
        _assert_bus_takes_a_scan(cfg.gate.venue, cfg.gate.id, ev)


@PROPERTY
@given(venue=ids_near_bounds, events=st.lists(events_near_bounds, min_size=1, max_size=3, unique=True))
def test_config_ids_every_house_capacity_that_parses_is_a_topic_of_its_own(venue, events):
    try:
        cfg = parse(HOUSE.format(venue=q(venue), capacity="\n".join(f"{q(ev)} = 10" for ev in events)))
    except ConfigError:
        return
    assume(cfg.house.capacity)
    own = {topics.house_status(cfg.venue), topics.house_alerts(cfg.venue), topics.house_doors(cfg.venue),
           topics.house_active(cfg.venue)}
    for ev in cfg.house.capacity:
        assert values.is_topic_level(ev) and topics.house(cfg.venue, ev) not in own, ev
        _assert_bus_takes_a_scan(cfg.venue, "door-a", ev)
