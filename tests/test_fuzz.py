"""Property-based fuzzing (hypothesis) of every parser that takes bytes from outside:
only the module's own error may come out, never another exception."""

import base64
import json
import os
import struct
import tempfile
import time

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate.boxoffice.gt1 import PREFIX, SignedTicketVerifier, b45encode, sign_ticket
from gate.boxoffice.pretix import PretixVerifier
from gate.boxoffice.ticketfile import read_ticket_file
from gate.bus import messages, values
from gate.bus.codec import pack_scan, unpack_scan
from gate.config import parse
from gate.core.errors import ConfigError, PayloadError, TicketFileError
from gate.core.events import ScanEvent

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = Ed25519PrivateKey.generate()
NOW = int(time.time() * 1000)

# Values of every type msgpack and JSON carry, including the ones that broke receivers before.
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                    st.floats(allow_nan=True), st.text(max_size=80), st.binary(max_size=40),
                    st.sampled_from([2**64 - 1, -2**63, 2**63, 0, -1, "+", "#", "a/b", "\0", "Hamlet #2", ""]))
nested = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                      max_leaves=20)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=40)),
                           lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=6)),
                           max_leaves=25)
GOOD = msgpack.unpackb(pack_scan(ScanEvent("id-1", "door-a", 7, NOW, "eve", "T1", "in", "admitted", "ok",
                                           ["member"])))


def _only(err, fn, *args):
    try:
        return fn(*args)
    except err:
        return None


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_scan_event_bytes(data):
    _only(PayloadError, unpack_scan, data)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(GOOD) + ["mode", "extra"]), nested, max_size=6))
def test_fuzz_scan_event_fields(changes):
    e = _only(PayloadError, unpack_scan, msgpack.packb({**GOOD, **changes}, use_bin_type=True))
    if e is not None:   # whatever passed is safe to store, count and publish
        assert values.seq_ok(e.seq) and values.ts_ok(e.ts) and values.is_event(e.event)
        assert values.is_id(e.gate) and e.mode in values.MODES and len(e.attention) <= values.MAX_ATTENTION
        assert e.event == "" or values.is_topic_level(e.event)


@FUZZ
@given(st.builds(ScanEvent, id=st.from_regex(values.EVENT_ID_RE, fullmatch=True),
                 gate=st.from_regex(values.ID_RE, fullmatch=True),
                 seq=st.integers(1, values.MAX_SEQ), ts=st.integers(NOW - 10**9, NOW + 10**6),
                 event=st.from_regex(values.EVENT_RE, fullmatch=True), ticket=st.from_regex(r"[ -~]{0,40}", fullmatch=True),
                 dir=st.sampled_from(["in", "out"]), result=st.sampled_from(["admitted", "exited", "rejected", "annulled"]),
                 reason=st.sampled_from(["ok", "exit", "unknown"]),
                 attention=st.lists(st.from_regex(values.TAG_RE, fullmatch=True), max_size=4),
                 mode=st.sampled_from(values.MODES)))
def test_fuzz_scan_event_valid_ones_round_trip(e):
    assert unpack_scan(pack_scan(e)) == e


@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.lists(scalars, max_size=8).map(lambda s: json.dumps({"seqs": s}, default=repr).encode())))
def test_fuzz_resend_request(data):
    seqs = _only(PayloadError, messages.unpack_resend, data)
    if seqs is not None:
        assert len(seqs) <= messages.MAX_RESEND_SEQS and all(values.seq_ok(s) for s in seqs)


@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["state", "profile", "version", "ts", "fps", "camera_ok", "fault",
                                                  "dropped", "malformed_payloads", "cpu_temp"]), json_values,
                                 max_size=6).map(lambda d: json.dumps(d).encode())))
def test_fuzz_status_and_health(data):
    status = _only(PayloadError, messages.unpack_status, data)
    if status is not None:
        assert status["state"] in ("online", "offline")
    health = _only(PayloadError, messages.unpack_health, data)
    if health is not None:
        json.dumps(health, allow_nan=False)   # what the house serves stays valid JSON


CONFIG = """[gate]
id = "door-a"
venue = "hall"
events = ["eve"]
[camera]
fps = 30
[turnstile]
pulse_ms = 200
[mqtt]
port = 1883
[house]
venue = "hall"
capacity = { "eve" = 10 }
"""
toml_values = st.one_of(st.integers(-2**70, 2**70).map(str), st.text(max_size=20).map(json.dumps),
                        st.sampled_from(["true", "[]", "{}", "1.5", "nan", "inf", '["a", 1]', "{ x = 1 }",
                                         '"Hamlet #2"', "1979-05-27", "[[1]]", '"', "= =", "[gate]"]))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, CONFIG.count("\n")), st.sampled_from(["id", "venue", "events", "fps",
                                                                                 "pulse_ms", "port", "capacity",
                                                                                 "zones", "nope", "source"]),
                          toml_values), max_size=4))
def test_fuzz_config_mutations(edits):
    lines = CONFIG.splitlines()
    for at, key, value in edits:
        lines.insert(at, f"{key} = {value}")
    _only(ConfigError, parse, "\n".join(lines))


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_config_text(text):
    _only(ConfigError, parse, text)


TICKET_HEADER = "ticket_id,code,event,holder,valid_from,valid_until,status,tags\n"
cells = st.one_of(st.text(max_size=12), st.sampled_from(["", "valid", "revoked", "2026-11-23T20:00:00",
                                                         "9999-99-99", "-1", '"', "a,b", "\r\n"]))


@FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.lists(cells, min_size=0, max_size=9), max_size=6).map(
                     lambda rows: (TICKET_HEADER + "\n".join(",".join(r) for r in rows)).encode("utf-8", "replace")),
                 json_values.map(lambda v: json.dumps(v).encode()),
                 st.lists(st.dictionaries(st.sampled_from(["ticket_id", "code", "event", "valid_from", "status",
                                                           "tags", "holder"]), json_values, max_size=7),
                          max_size=4).map(lambda v: json.dumps(v).encode())),
       st.sampled_from([".csv", ".json"]))
def test_fuzz_ticket_file_import(data, suffix):
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _only(TicketFileError, read_ticket_file, path)
    finally:
        os.unlink(path)


GT1 = SignedTicketVerifier([KEY.public_key()])
SIGNED = sign_ticket(KEY, "T1", "eve", "stalls", 0, 0)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(max_size=200).map(lambda t: PREFIX + t),
                 st.binary(max_size=200).map(lambda b: PREFIX + b45encode(b)),
                 st.tuples(st.integers(0, len(SIGNED) - 1), st.characters()).map(
                     lambda m: SIGNED[:m[0]] + m[1] + SIGNED[m[0] + 1:])))
def test_fuzz_gt1_codes_never_raise(text):
    ticket, forged = GT1.verify(text)
    assert forged or ticket is not None


PRETIX = PretixVerifier([KEY.public_key()], items={"1": "eve"}, subevents={}, zones={})


def _pretix_blob(payload: bytes, sig: bytes) -> str:
    blob = b"\x01" + struct.pack(">HH", len(payload), len(sig)) + payload + sig
    return base64.b64encode(blob).decode()[::-1]


@FUZZ
@given(st.one_of(st.text(max_size=200),
                 st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()[::-1]),
                 st.binary(max_size=120).map(lambda p: _pretix_blob(p, KEY.sign(p))),
                 st.tuples(st.binary(max_size=80), st.binary(max_size=80)).map(lambda t: _pretix_blob(*t))))
def test_fuzz_pretix_codes_never_raise(text):
    PRETIX.claims(text)
    ticket, forged = PRETIX.verify(text)
    assert forged or ticket is not None
