"""Every signature names its purpose (and venue): a valid signature of one kind never verifies as
another, for every ordered pair of kinds, even when one key signs them all. Codes in the old format
(signed before purposes) are refused with a log line that says how to re-issue them."""

import itertools
import struct
import time

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice import purpose
from gate.boxoffice.gt1 import PREFIX, SignedTicketVerifier, b45decode, b45encode, sign_ticket
from gate.boxoffice.keys import key_id, keyring
from gate.boxoffice.lists import verify_list
from gate.boxoffice.staff import CARD, CONTROL, StaffVerifier, read_control, sign_card, sign_control
from gate.core.errors import PayloadError
from gate.core.events import Code, History, Ticket
from gate.decide import GateRules, decide
from gate.resolve import Resolver
from gate.state.tickets import TicketStore

KEY = Ed25519PrivateKey.generate()   # one key for every kind: the worst a venue could configure
NOW = int(time.time())
RULES = GateRules("door-a", frozenset({"eve"}))
KINDS = ("ticket", "staff card", "venue control", "ticket list")


def signed_as(kind: str):
    """(signed bytes without the signature, signature) of a genuine code or list of `kind`."""
    if kind == "ticket":
        blob = b45decode(sign_ticket(KEY, "0123456789abcdef", "Mallory", "clear", NOW - 60, NOW + 3600)[4:])
    elif kind == "staff card":
        blob = b45decode(sign_card(KEY, "hall", "Mallory", "clear", NOW - 60, NOW + 3600)[4:])
    elif kind == "venue control":
        blob = b45decode(sign_control(KEY, "hall", "Mallory", "test", NOW)[4:])
    else:
        env = msgpack.unpackb(pack_list_for("hall"))
        return env["signed"], env["sig"]
    return blob[:-64], blob[-64:]


def pack_list_for(venue):
    from gate.boxoffice.lists import pack_list
    return pack_list([Ticket("T1", "eve", "CODE-1")], signing_key=KEY, secret=b"s" * 32, venue=venue,
                     series="box-1", seq=1)


def presented_as(kind: str, payload: bytes, sig: bytes):
    """Those exact bytes and signature, framed as a `kind`: all an attacker can do with a signature."""
    if kind == "ticket":
        return PREFIX + b45encode(payload + sig)
    if kind == "staff card":
        return CARD + b45encode(payload + sig)
    if kind == "venue control":
        return (CONTROL + b45encode(payload + sig)).encode()
    return msgpack.packb({"v": 2, "key": key_id(KEY.public_key()), "sig": sig, "signed": payload})


def accepted_as(kind: str, presented, tmp_path) -> bool:
    pub = KEY.public_key()
    if kind == "ticket":
        ticket, forged = SignedTicketVerifier([pub]).verify(presented)
        return not forged
    if kind == "staff card":
        store = TicketStore(tmp_path / "t.db")
        try:
            res = Resolver(store, [StaffVerifier([pub], "hall")]).resolve(Code("qr", presented.encode(), presented))
        finally:
            store.close()
        assert res.staff is not None or res.forged   # a staff code is obeyed or forged, never anything else
        return res.staff is not None
    if kind == "venue control":
        return read_control(presented, StaffVerifier([pub], "hall"), 0, NOW) is not None
    try:
        verify_list(presented, keyring([pub]))
        return True
    except PayloadError:
        return False


def test_purpose_each_kind_verifies_as_itself(tmp_path):
    for kind in KINDS:
        assert accepted_as(kind, presented_as(kind, *signed_as(kind)), tmp_path), kind


@pytest.mark.parametrize("signed_kind,shown_kind", [p for p in itertools.permutations(KINDS, 2)])
def test_purpose_no_signature_verifies_as_another_kind(tmp_path, signed_kind, shown_kind):
    """Sign as one kind, present as another (the same signed bytes, reframed): refused as forged/unsigned.
    Includes a ticket key's signature shown as a staff card (its fields line up with a card's exactly:
    id, name, action, two times) and a card turned into a control message and back."""
    payload, sig = signed_as(signed_kind)
    assert not accepted_as(shown_kind, presented_as(shown_kind, payload, sig), tmp_path)


def test_purpose_ticket_fields_that_read_as_a_card_still_are_no_card(tmp_path):
    """The ticket's payload parses as a card field for field; only the purpose in the signature tells them
    apart, and it does, at the gate: the code is `forged` and nothing is obeyed."""
    payload, sig = signed_as("ticket")
    code = presented_as("staff card", payload, sig)
    store = TicketStore(tmp_path / "t.db")
    res = Resolver(store, [StaffVerifier([KEY.public_key()], "hall"), SignedTicketVerifier([KEY.public_key()])]
                   ).resolve(Code("qr", code.encode(), code))
    assert res.forged and res.staff is None
    assert decide(res, History(), RULES, NOW * 1000).reason == "forged"
    store.close()


def test_purpose_signature_names_the_purpose_and_venue():
    """At the signature itself: for the same payload, a signature for one purpose or venue is no other's."""
    payload = b"\x02same bytes for every purpose"
    for a, b in itertools.permutations(purpose.PURPOSES, 2):
        sig = purpose.sign(KEY, a, payload, "hall" if a in purpose.VENUE_BOUND else "")
        assert not purpose.verifies(KEY.public_key(), sig, b, payload, "hall" if b in purpose.VENUE_BOUND else "")
    for p in purpose.VENUE_BOUND:
        sig = purpose.sign(KEY, p, payload, "hall")
        assert purpose.verifies(KEY.public_key(), sig, p, payload, "hall")
        assert not purpose.verifies(KEY.public_key(), sig, p, payload, "hall2")
        assert not purpose.verifies(KEY.public_key(), KEY.sign(payload), p, payload, "hall")   # no purpose at all
    contexts = [purpose.context(p, "hall") for p in purpose.PURPOSES]
    assert not any(a != b and b.startswith(a) for a in contexts for b in contexts)   # prefix-free
    assert purpose.context(purpose.TICKET_LIST) == b"gate ticket list v2\x00"   # lists in the field stay readable


def test_purpose_card_and_control_are_bound_to_their_venue(tmp_path):
    card = sign_card(KEY, "arena", "Jo", "clear", NOW, NOW + 60)
    control = sign_control(KEY, "arena", "Jo", "test", NOW)
    assert StaffVerifier([KEY.public_key()], "arena").verify(card, CARD, NOW) is not None
    assert StaffVerifier([KEY.public_key()], "hall").verify(card, CARD, NOW) is None
    assert read_control(control.encode(), StaffVerifier([KEY.public_key()], "hall"), 0, NOW) is None
    assert read_control(control.encode(), StaffVerifier([KEY.public_key()], "arena"), 0, NOW) is not None


# -- codes from before purposes: format 1 ---------------------------------------------------------------
def old_format(prefix: str, fields, t1: int, t2: int) -> str:
    """A code as the project signed them before purposes: version 1, signature over the bare payload."""
    payload = bytes([1]) + key_id(KEY.public_key())
    for f in fields:
        payload += bytes([len(f.encode())]) + f.encode()
    payload += struct.pack(">II", t1, t2)
    return prefix + b45encode(payload + KEY.sign(payload))


def test_purpose_old_format_cards_and_control_messages_are_refused_with_a_reissue_message(tmp_path, caplog):
    verifier = StaffVerifier([KEY.public_key()], "hall")
    store = TicketStore(tmp_path / "t.db")
    card = old_format(CARD, ("Jo Usher", "clear"), NOW, 0)
    res = Resolver(store, [verifier]).resolve(Code("qr", card.encode(), card))
    assert res.forged and res.staff is None
    assert "staff card in the old format" in caplog.text and "re-issue it with `gate staff issue`" in caplog.text
    control = old_format(CONTROL, ("box office", "test"), NOW, 0).encode()
    assert read_control(control, verifier, 0, NOW) is None
    assert "send it again with `gate venue live|test`" in caplog.text
    store.close()


def test_purpose_old_format_tickets_refused_unless_within_the_configured_grace(tmp_path, caplog):
    old = old_format(PREFIX, ("OLD-1", "eve", "stalls"), 0, 0)
    ticket, forged = SignedTicketVerifier([KEY.public_key()]).verify(old)
    assert forged and ticket is None
    assert "GT1 ticket in the old format" in caplog.text and "`gate tickets issue`" in caplog.text
    graced = SignedTicketVerifier([KEY.public_key()], legacy_until=NOW + 3600)
    ticket, forged = graced.verify(old)
    assert not forged and (ticket.ticket_id, ticket.zone) == ("OLD-1", "stalls")
    assert graced.verify(old, now_s=NOW + 3601) == (None, True)          # the grace ends
    # the grace is for format-1 tickets alone: an old card or control message is never a ticket
    for other in (old_format(PREFIX, ("Jo", "clear"), NOW, NOW + 60), PREFIX + old_format(CONTROL, ("x", "test"),
                                                                                          NOW, 0)[4:]):
        assert graced.verify(other) == (None, True)


def test_purpose_legacy_grace_from_the_config(tmp_path):
    from gate.boxoffice.keys import new_keypair
    from gate.core.errors import ConfigError
    from gate.resolve import load_verifiers
    from tests.conftest import gate_config
    _, pub = new_keypair(tmp_path / "keys", "tickets")
    soon = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(NOW + 86400))
    cfg = gate_config(tmp_path, keys=f'["{pub}"]', gate_extra="")
    text = open(cfg.path).read().replace("[signing]\n", f'[signing]\nlegacy_tickets_until = "{soon}"\n')
    from gate.config import parse
    [v] = load_verifiers(parse(text, cfg.path))
    assert abs(v.legacy_until - (NOW + 86400)) <= 1
    for bad in ("next week", "2099-01-01"):   # not a time; more than a year ahead
        with pytest.raises(ConfigError, match="signing.legacy_tickets_until"):
            parse(text.replace(soon, bad), cfg.path)
