import base64
import random
import re
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.gt1 import B45, SignedTicketVerifier, b45decode, b45encode, sign_ticket
from gate.boxoffice.keys import load_public_key, new_keypair
from gate.boxoffice.pretix import PretixVerifier
from gate.core.events import Code, History, Ticket
from gate.decide import GateRules, decide
from gate.resolve import Resolver
from gate.state.tickets import TicketStore
from tests.pretix_codes import pretix_code

KEY = Ed25519PrivateKey.generate()
RULES = GateRules("door-a", frozenset({"eve"}))


def verdict(store, verifiers, text, now_ms=None):
    r = Resolver(store, verifiers).resolve(Code("qr", text.encode(), text))
    h = store.history(r.ticket.ticket_id) if r.ticket else History()
    return decide(r, h, RULES, now_ms or int(time.time() * 1000))


@pytest.fixture
def store(tmp_path):
    s = TicketStore(tmp_path / "t.db")
    yield s
    s.close()


def test_signing_base45_roundtrip_rfc_vectors():
    assert b45encode(b"AB") == "BB8" and b45encode(b"Hello!!") == "%69 VD92EX0"
    assert b45decode("QED8WEX0") == b"ietf!"
    for n in range(0, 40):
        data = random.Random(n).randbytes(n)
        assert b45decode(b45encode(data)) == data
    for bad in ("GGW", "a", "::::"):
        with pytest.raises(ValueError):
            b45decode(bad)


def test_signing_valid_ticket_admits(store):
    code = sign_ticket(KEY, "S1", "eve", "stalls")
    assert set(code) <= set(B45)  # QR alphanumeric mode throughout
    assert verdict(store, [SignedTicketVerifier([KEY.public_key()])], code).reason == "ok"


def test_signing_any_bit_flip_is_forged(store):
    v = [SignedTicketVerifier([KEY.public_key()])]
    code = sign_ticket(KEY, "S1", "eve")
    raw = b45decode(code[4:])
    for i in range(len(raw)):
        for bit in (0, 3, 7):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            assert verdict(store, v, "GT1:" + b45encode(bytes(flipped))).reason == "forged", (i, bit)


def test_signing_wrong_key_truncated_overlong_random(store):
    v = [SignedTicketVerifier([KEY.public_key()])]
    other = sign_ticket(Ed25519PrivateKey.generate(), "S1", "eve")
    code = sign_ticket(KEY, "S1", "eve")
    assert verdict(store, v, other).reason == "forged"
    assert verdict(store, v, code[:-3]).reason == "forged"
    assert verdict(store, v, code + "00").reason == "forged"
    assert verdict(store, v, "GT1:").reason == "forged"
    rng = random.Random(1)
    for _ in range(200):
        assert verdict(store, v, "GT1:" + "".join(rng.choice(B45) for _ in range(rng.randint(0, 200)))).reason == "forged"


def test_signing_revoked_after_issue(store):
    v = [SignedTicketVerifier([KEY.public_key()])]
    code = sign_ticket(KEY, "S9", "eve")
    assert verdict(store, v, code).reason == "ok"
    store.replace_all([], revoked=["S9"])
    assert verdict(store, v, code).reason == "revoked"


def test_signing_validity_edges_and_clock_skew(store):
    v = [SignedTicketVerifier([KEY.public_key()])]
    t0 = 1_800_000_000
    code = sign_ticket(KEY, "S2", "eve", "", t0, t0 + 3600)
    assert verdict(store, v, code, (t0 - 1) * 1000).reason == "not_yet_valid"
    assert verdict(store, v, code, t0 * 1000).reason == "ok"
    assert verdict(store, v, sign_ticket(KEY, "S3", "eve", "", t0, t0 + 3600), (t0 + 3600) * 1000).reason == "ok"
    assert verdict(store, v, code, (t0 + 3600) * 1000 + 1).reason == "expired"
    assert verdict(store, v, sign_ticket(KEY, "S4", "other"), t0 * 1000).reason == "wrong_event"


def test_signing_key_rotation(store, tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    both = [SignedTicketVerifier([old.public_key(), new.public_key()])]
    assert verdict(store, both, sign_ticket(old, "R1", "eve")).reason == "ok"
    assert verdict(store, both, sign_ticket(new, "R2", "eve")).reason == "ok"
    retired = [SignedTicketVerifier([new.public_key()])]
    assert verdict(store, retired, sign_ticket(old, "R3", "eve")).reason == "forged"


def test_signing_keys_on_disk(tmp_path):
    kp, pp = new_keypair(tmp_path, "box")
    assert oct(kp.stat().st_mode & 0o777) == "0o600"
    assert load_public_key(pp) is not None
    with pytest.raises(FileExistsError):
        new_keypair(tmp_path, "box")


def test_signing_list_adds_holder_to_signed_ticket(store):
    v = [SignedTicketVerifier([KEY.public_key()])]
    code = sign_ticket(KEY, "S7", "eve")
    store.replace_all([Ticket("S7", "eve", code, holder="Ada Lovelace", seat="A1", tags=("member",))])
    out = verdict(store, v, code)
    assert out.reason == "ok" and out.ticket.holder == "Ada Lovelace" and out.ticket.signed


def test_tickets_update_is_atomic_for_a_reader(tmp_path):
    """A scan during an update sees the old list or the new one, never a mix."""
    writer = TicketStore(tmp_path / "t.db")
    reader = TicketStore(tmp_path / "t.db")
    old = [Ticket(f"A{i}", "eve", f"A-{i}") for i in range(20000)]
    new = [Ticket(f"B{i}", "eve", f"B-{i}") for i in range(20000)]
    writer.replace_all(old, version=1)
    stop, seen = threading.Event(), set()

    def scan():
        while not stop.is_set():
            with reader.snapshot():  # as the scan loop reads: one snapshot per scan
                a = reader.by_code("A-19999") is not None
                b = reader.by_code("B-0") is not None
            seen.add((a, b))
    th = threading.Thread(target=scan)
    th.start()
    for v in range(2, 6):
        writer.replace_all(new if v % 2 == 0 else old, version=v)
    stop.set()
    th.join()
    assert seen <= {(True, False), (False, True)} and len(seen) == 2


# -- pretix_sig1 -------------------------------------------------------------------

def test_pretix_sig1_tickets(store):
    key = Ed25519PrivateKey.generate()
    v = [PretixVerifier([key.public_key()], items={"12": "eve"}, subevents={"7": "matinee"}, zones={"12": "stalls"})]
    good = pretix_code(key, seed="abcdefgh1234", item=12, variation=0, subevent=0)
    out = verdict(store, v, good)
    assert (out.reason, out.ticket.ticket_id, out.ticket.zone) == ("ok", "pretix-abcdefgh1234", "stalls")
    assert verdict(store, v, pretix_code(key, seed="s2", item=12, subevent=7)).reason == "wrong_event"
    t0 = 1_800_000_000
    timed = pretix_code(key, seed="s3", item=12, validFromUnixTime=t0, validUntilUnixTime=t0 + 60)
    assert verdict(store, v, timed, (t0 - 1) * 1000).reason == "not_yet_valid"
    assert verdict(store, v, timed, (t0 + 61) * 1000).reason == "expired"
    assert verdict(store, v, pretix_code(Ed25519PrivateKey.generate(), seed="s4", item=12)).reason == "forged"
    blob = bytearray(base64.b64decode(good[::-1]))
    blob[8] ^= 0x10
    assert verdict(store, v, base64.b64encode(bytes(blob)).decode()[::-1]).reason == "forged"
    assert verdict(store, v, "CODE-NOT-PRETIX").reason == "unknown"


def test_signing_issue_command_end_to_end(tmp_path, store):
    from tests.conftest import run_gate_cli
    r = run_gate_cli("keys", "new", "--out", str(tmp_path / "keys"), "--name", "box")
    assert r.returncode == 0, r.stderr
    r = run_gate_cli("tickets", "issue", "--key", str(tmp_path / "keys/box.key"), "--event", "eve", "--count", "5",
                     "--zone", "stalls", "--valid-until", "2099-01-01T00:00:00+00:00", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"QR symbol versions: v\d+: 5", r.stdout) and "issuing eve" in r.stderr
    pngs = sorted((tmp_path / "out/qr").glob("*.png"))
    r = run_gate_cli("decode", str(pngs[0]))
    code = __import__("json").loads(r.stdout.split("\t")[2])
    v = [SignedTicketVerifier([load_public_key(tmp_path / "keys/box.pub")])]
    out = verdict(store, v, code)
    assert out.reason == "ok" and out.ticket.ticket_id == pngs[0].stem and out.ticket.zone == "stalls"


# -- the reading half on libsodium (gate/boxoffice/ed25519.py) against cryptography's writing half --------------

def test_ed25519_signatures_made_by_cryptography_verify_on_libsodium_and_nothing_else_does():
    from gate.boxoffice.ed25519 import BadSignature, verify_key
    other = Ed25519PrivateKey.generate()
    vk = verify_key(KEY.public_key())
    assert vk == verify_key(KEY) and vk != verify_key(other)
    for n in (0, 1, 63, 64, 1000):
        msg = random.randbytes(n)
        sig = KEY.sign(msg)
        vk.verify(sig, msg)   # returns: cryptography's signature is libsodium's
        bad = [other.sign(msg), sig[:-1], sig + b"\0", bytes(64), sig[:32] + bytes(32)]
        bad += [bytes([sig[0] ^ 1]) + sig[1:], sig[:63] + bytes([sig[63] ^ 0x80])]
        for s in bad:
            with pytest.raises(BadSignature):
                vk.verify(s, msg)
        with pytest.raises(BadSignature):
            vk.verify(sig, msg + b"x")
    # a non-canonical S (S + the group order L) is the same point to a lax verifier; libsodium refuses it
    L = 2**252 + 27742317777372353535851937790883648493
    msg = b"canonical"
    sig = KEY.sign(msg)
    s = int.from_bytes(sig[32:], "little") + L
    if s < 2**256:
        with pytest.raises(BadSignature):
            vk.verify(sig[:32] + s.to_bytes(32, "little"), msg)


def test_sealed_bodies_open_across_both_libraries_and_only_under_their_key():
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from gate.boxoffice.ed25519 import BadSeal, open_sealed, seal
    key, nonce, other = random.randbytes(32), random.randbytes(12), random.randbytes(32)
    for n in (0, 1, 4096):
        data = random.randbytes(n)
        assert open_sealed(key, nonce, ChaCha20Poly1305(key).encrypt(nonce, data, None)) == data
        assert ChaCha20Poly1305(key).decrypt(nonce, seal(key, nonce, data), None) == data
        sealed = seal(key, nonce, data)
        for bad_key, bad_nonce, bad in ((other, nonce, sealed), (key, random.randbytes(12), sealed),
                                        (key, nonce, sealed[:-1]), (key, nonce, bytes([sealed[0] ^ 1]) + sealed[1:]),
                                        (key, nonce[:11], sealed), (key, nonce, b"")):
            with pytest.raises(BadSeal):
                open_sealed(bad_key, bad_nonce, bad)


def test_public_keys_load_strictly_from_pem(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gate.boxoffice.ed25519 import from_pem, verify_key
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert from_pem(pem) == verify_key(KEY)
    ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    lines = pem.strip().splitlines()
    assert from_pem(b"a comment\n" + pem + b"more text\n") == verify_key(KEY)   # RFC 7468 explanatory text
    assert from_pem(pem.replace(b"\n", b"\r\n")) == verify_key(KEY)
    for bad in (ec_pem, pem.replace(b"PUBLIC", b"PRIVATE"), pem + pem, pem + ec_pem, pem[:-len(b"-----END PUBLIC KEY-----\n")],
                b"\n".join([lines[0], b"!!!!", lines[-1]]), b"\n".join([lines[0], lines[-1]]),
                b"\n".join([lines[0], base64.b64encode(b"\x30\x2a" + bytes(42)), lines[-1]])):
        with pytest.raises(ValueError):
            from_pem(bad)
    p = tmp_path / "k.pub"
    p.write_bytes(ec_pem)
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        load_public_key(p)


def test_the_gate_scans_without_loading_cryptography():
    """What keeps `gate scan` lean (README, memory): the gate reads signatures with libsodium; cryptography's
    OpenSSL backend (about 5 MB resident on Raspberry Pi OS) is only for the house and the box office."""
    import subprocess
    import sys
    code = ("import sys, gate.cli.main, gate.scanner, gate.build, gate.resolve, gate.state.tickets\n"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('cryptography')}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_a_list_whose_pretix_meta_is_malformed_gives_no_keys_and_no_error():
    """The pretix keys that arrive with a list (gate/boxoffice/pretix.py `_from_list`): whatever shape the meta
    has, the verifier falls back to no listed keys instead of raising into the scan path."""
    class Meta:
        def __init__(self, raw):
            self.raw = raw

        def meta(self, name):
            return self.raw
    for raw in ('{"keys": 5}', '{"keys": null}', "[" * 5000, '{"keys": [1, {"a": 2}]}', '"x"', "{", "[]"):
        v = PretixVerifier([], {}, {}, {})
        v.store = Meta(raw)
        assert v._from_list()[0] == []
        assert v.claims("nothing") is False
