"""Staff cards: signed like tickets, with their own key; anything else claiming to be one is forged."""

import time

import numpy as np

from gate.boxoffice.keys import load_private_key, load_public_key, new_keypair
from gate.boxoffice.staff import CARD, CONTROL, StaffVerifier, sign
from gate.camera import MemorySource, load_grey
from gate.core.events import Code
from gate.decode import Decoder
from gate.resolve import Resolver
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import gate_config, run_gate_cli

RNG = np.random.default_rng(17)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def keys(tmp_path, name):
    kp, pp = new_keypair(tmp_path / "keys", name)
    return load_private_key(kp), load_public_key(pp), pp


def resolver(tmp_path, *pubs):
    store = TicketStore(tmp_path / "t.db")
    return Resolver(store, [StaffVerifier(pubs)] if pubs else [])


def code(text):
    return Code("qr", text.encode(), text)


def test_staff_card_verifies_under_the_staff_key(tmp_path):
    priv, pub, _ = keys(tmp_path, "staff")
    r = resolver(tmp_path, pub).resolve(code(sign(priv, CARD, "Jo Usher", "exit", int(time.time()))))
    assert not r.forged and r.ticket is None and (r.staff.name, r.staff.action) == ("Jo Usher", "exit")
    assert r.ref.startswith("h:")


def test_staff_card_under_a_wrong_key_or_none_is_forged(tmp_path):
    priv, pub, _ = keys(tmp_path, "staff")
    other, _, _ = keys(tmp_path, "tickets")
    card = sign(other, CARD, "Mallory", "clear", int(time.time()))
    for res in (resolver(tmp_path, pub).resolve(code(card)),
                resolver(tmp_path / "none").resolve(code(sign(priv, CARD, "Jo", "entry", 1)))):
        assert res.forged and res.staff is None
    good = sign(priv, CARD, "Jo", "test", int(time.time()))
    r = resolver(tmp_path, pub)
    for bad in (good[:-2] + ("AB" if good[-2:] != "AB" else "CD"),   # signature bytes changed
                CARD, CARD + "%%%", CARD + "0" * 600,
                good.replace(CARD, CONTROL),                         # a control message is not a card
                sign(priv, CARD, "Jo", "test", 1, valid_until=2)):   # expired long ago
        res = r.resolve(code(bad))
        assert res.forged and res.staff is None, bad[:40]


def test_staff_sign_refuses_unknown_actions(tmp_path):
    import pytest
    priv, _, _ = keys(tmp_path, "staff")
    with pytest.raises(ValueError):
        sign(priv, CARD, "Jo", "admit-everyone", 1)
    with pytest.raises(ValueError):
        sign(priv, CONTROL, "Jo", "entry", 1)


def test_staff_issue_prints_cards_the_decoder_reads(tmp_path):
    priv, pub, _ = keys(tmp_path, "staff")
    r = run_gate_cli("staff", "issue", "--key", str(tmp_path / "keys" / "staff.key"), "--name", "Jo Usher",
                     "--out", str(tmp_path / "cards"))
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [a for a, _, _ in rows] == ["entry", "exit", "info", "test", "clear"]
    verify = StaffVerifier([pub])
    for action, png, text in rows:
        [read] = Decoder().still(load_grey(png))
        assert read.text == text
        assert verify.verify(read.text, CARD, int(time.time())).action == action
    bad = run_gate_cli("staff", "issue", "--key", str(tmp_path / "keys" / "staff.pub"), "--name", "X",
                       "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_staff_forged_card_through_the_loop(tmp_path, mock_factory):
    priv, pub, pp = keys(tmp_path, "staff")
    other, _, _ = keys(tmp_path, "other")
    cfg = gate_config(tmp_path, debounce=0.5)
    cfg.signing.staff_keys = [str(pp)]
    frames = [EMPTY] * 3 + [compose(sign(other, CARD, "Mallory", "clear", int(time.time())), "clean", rng=RNG)] * 3
    verdicts = []
    s = Scanner(cfg, MemorySource(frames + [EMPTY] * 3, 0), pin_factory=mock_factory, connect=False,
                on_verdict=lambda v, w, e: verdicts.append((v.result, v.reason, e.ticket)))
    assert s.run() == 0
    assert [(r, why) for r, why, _ in verdicts] == [("rejected", "forged")]
    assert verdicts[0][2].startswith("h:")   # the code itself never goes on the wire
