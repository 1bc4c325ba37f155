"""pretix_sig1 at the gate: the verdict bugs a real pretix venue hits, one test each,
plus several keys and `blocked`. (Tickets signed by pretix itself: test_pretix_server.py.)"""

import base64
import json
import random
import struct
import time

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from gate.boxoffice.pretix import PretixVerifier, load_pretix_key, load_pretix_key_file
from gate.core.events import REASONS, Code, History, Ticket
from gate.decide import GateRules, decide
from gate.resolve import Resolver
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import run_gate_cli
from tests.pretix_codes import pretix_code

RULES = GateRules("door-a", frozenset({"gala", "series-7"}))


def verdict(store, verifiers, text, now_ms=None):
    r = Resolver(store, verifiers).resolve(Code("qr", text.encode(), text))
    h = store.history(r.ticket.ticket_id) if r.ticket else History()
    return decide(r, h, RULES, now_ms or int(time.time() * 1000))


def pretix_shown(key) -> bytes:
    """A public key the way pretix shows it (and serves it as valid_keys): base64 of the PEM text."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(pem)


def raw_signed(key, payload: bytes) -> str:
    sig = key.sign(payload)
    blob = bytes([1]) + struct.pack(">HH", len(payload), len(sig)) + payload + sig
    return base64.b64encode(blob).decode()[::-1]


def test_pretix_key_as_pretix_shows_it_is_accepted_by_config_check_and_scan(tmp_path):
    key = Ed25519PrivateKey.generate()
    (tmp_path / "pretix.pub").write_bytes(pretix_shown(key))
    frames = tmp_path / "frames"
    frames.mkdir()
    code = pretix_code(key, seed="seatA1", item=5)
    rng = np.random.default_rng(1)
    for i, c in enumerate([None, code, code, code, None, None]):
        Image.fromarray(compose(c, "clean" if c else "empty", rng=rng)).save(frames / f"{i:03d}.png")
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="door-p"\nvenue="hall"\nevents=["gala"]\n[storage]\ndir="{tmp_path}/s"\n'
                   f'[pretix]\nevent="gala"\npublic_keys=["{tmp_path}/pretix.pub"]\n')
    r = run_gate_cli("config", "check", str(cfg))
    assert r.returncode == 0, r.stderr
    r = run_gate_cli("scan", "-c", str(cfg), "--source", f"replay:{frames}@20", "--json", "--offline")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    e = json.loads(r.stdout.splitlines()[0])
    assert (e["result"], e["reason"], e["ticket"], e["event"]) == ("admitted", "ok", "pretix-seatA1", "gala")


def test_pretix_bad_key_is_caught_by_config_check(tmp_path):
    (tmp_path / "bad.pub").write_bytes(base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="door-p"\nvenue="hall"\n\n[pretix]\npublic_keys = ["{tmp_path}/bad.pub"]\n')
    r = run_gate_cli("config", "check", str(cfg))
    assert r.returncode == 2 and f"{cfg}:6: pretix.public_keys" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.pub").write_text("not a key at all")
    r = run_gate_cli("config", "check", str(cfg))
    assert r.returncode == 2 and "pretix.public_keys" in r.stderr


def test_pretix_key_forms_all_load_to_the_same_key(tmp_path):
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for form in (pem, base64.b64encode(pem), base64.b64encode(raw), b"  " + base64.b64encode(pem) + b"\n"):
        got = load_pretix_key(form).raw
        assert got == raw
    (tmp_path / "k").write_bytes(b"x" * 100_000)
    try:
        load_pretix_key_file(tmp_path / "k")
        raise AssertionError("a huge key file was accepted")
    except ValueError as exc:
        assert "too large" in str(exc)


def test_pretix_several_keys_each_admit(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    k1, k2, k3 = (Ed25519PrivateKey.generate() for _ in range(3))
    v = [PretixVerifier([k1.public_key(), k2.public_key()], {}, {}, {}, "gala")]
    assert verdict(store, v, pretix_code(k1, seed="one", item=1)).reason == "ok"
    assert verdict(store, v, pretix_code(k2, seed="two", item=1)).reason == "ok"
    assert verdict(store, v, pretix_code(k3, seed="three", item=1)).reason == "forged"


def test_pretix_keys_arrive_with_the_ticket_list(tmp_path):
    """The house fills in the keys: a gate with no pretix key in its config still verifies."""
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    code = pretix_code(key, seed="listed", item=1)
    assert verdict(store, [], code).reason == "unknown"    # no key anywhere: not ours to judge
    store.replace_all([], pretix=json.dumps({"keys": [pretix_shown(key).decode()], "event": "gala"}))
    out = verdict(store, [], code)
    assert (out.reason, out.ticket.event) == ("ok", "gala")
    assert verdict(store, [], pretix_code(Ed25519PrivateKey.generate(), seed="x", item=1)).reason == "forged"


def test_pretix_revocation_list_of_full_secrets_rejects(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    v = [PretixVerifier([key.public_key()], {}, {}, {}, "gala")]
    secret = pretix_code(key, seed="reissued", item=1)
    store.replace_all([], revoked=[secret])      # pretix's revokedsecrets hold the full secret
    assert verdict(store, v, secret).reason == "revoked"
    store.replace_all([Ticket("T1", "gala", "plain-secret-1")], revoked=["plain-secret-1"])
    assert verdict(store, v, "plain-secret-1").reason == "revoked"


def test_pretix_series_ticket_for_another_date_is_wrong_event(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    # Tonight is date 7 of the series; item 12 is sold for every date.
    v = [PretixVerifier([key.public_key()], {"12": "gala"}, {}, {}, "series")]
    tonight = verdict(store, v, pretix_code(key, seed="d7", item=12, subevent=7))
    other = verdict(store, v, pretix_code(key, seed="d9", item=12, subevent=9))
    assert (tonight.reason, tonight.ticket.event) == ("ok", "series-7")
    assert (other.reason, other.ticket.event) == ("wrong_event", "series-9")


def test_pretix_signed_payload_with_wrong_wire_types_is_forged_not_a_crash(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    v = [PretixVerifier([key.public_key()], {}, {}, {}, "gala")]
    bad_payloads = [
        bytes([0x08, 0x05]),                           # seed (1) as a varint
        bytes([0x0A, 0x02]) + b"ok" + bytes([0x2A, 0x03]) + b"abc",   # valid_from (5) as bytes
        bytes([0x0A, 0x02]) + b"ok" + bytes([0x12, 0x01, 0x31]),       # item (2) as bytes
        bytes([0x0A, 0x02]) + b"\xff\xfe",            # seed not UTF-8
        bytes([0x0A, 0x02]) + b"ok" + bytes([0x28]) + b"\xff" * 9 + b"\x01",  # valid_from beyond any date
        b"",                                           # no seed at all
    ]
    for payload in bad_payloads:
        out = verdict(store, v, raw_signed(key, payload))
        assert out.reason == "forged", payload
    rng = random.Random(7)
    for _ in range(500):   # anything signed by a trusted key: a verdict, never an exception
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        assert verdict(store, v, raw_signed(key, payload)).reason in REASONS


def test_pretix_framed_but_unparsable_is_forged_not_unknown(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    v = [PretixVerifier([key.public_key()], {}, {}, {}, "gala")]
    good = pretix_code(key, seed="abc", item=1)
    blob = base64.b64decode(good[::-1])
    for broken in (blob[:-7], blob + b"\x00\x00\x00", blob[:5] + blob[6:] + b"\x00",
                   blob[:3] + b"\xff\xff" + blob[5:]):
        text = base64.b64encode(broken).decode()[::-1]
        assert verdict(store, v, text).reason == "forged", broken[:8]
    assert verdict(store, v, "abcdefghijklmnopqrstuvwxyz012345").reason == "unknown"   # pretix's unsigned secrets
    assert verdict(store, v, "CODE-0001").reason == "unknown"


def test_pretix_blocked_ticket_is_blocked_and_can_leave(tmp_path):
    store = TicketStore(tmp_path / "t.db")
    key = Ed25519PrivateKey.generate()
    v = [PretixVerifier([key.public_key()], {}, {}, {}, "gala")]
    store.replace_all([Ticket("pretix-held", "gala", "x", status="blocked"),
                       Ticket("ORD1-1", "gala", "plainsecretheld", status="blocked")])
    out = verdict(store, v, pretix_code(key, seed="held", item=1))
    assert (out.result, out.reason) == ("rejected", "blocked")
    assert verdict(store, v, "plainsecretheld").reason == "blocked"
    r = Resolver(store, v).resolve(Code("qr", b"plainsecretheld", "plainsecretheld"))
    assert decide(r, History(), GateRules("exit-a", frozenset({"gala"}), direction="out"), 0).reason == "exit"
