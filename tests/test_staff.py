"""Staff cards: signed like tickets, with their own key, for one venue, with an id and a lifetime;
anything else claiming to be one is forged."""

import time

import numpy as np

from gate.boxoffice.keys import load_private_key, load_public_key, new_keypair
from gate.boxoffice.staff import CARD, CONTROL, StaffVerifier, sign_card, sign_control
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
    return Resolver(store, [StaffVerifier(pubs, "hall")] if pubs else [])


def sign(priv, prefix, name, action, issued, valid_until=None, venue="hall"):
    """A card (valid an hour unless told) or a control message, as the box office signs them."""
    if prefix == CONTROL:
        return sign_control(priv, venue, name, action, issued)
    return sign_card(priv, venue, name, action, issued, valid_until or issued + 3600)


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
                sign(priv, CARD, "Jo", "test", 1, valid_until=2),    # expired long ago
                sign(priv, CARD, "Jo", "test", int(time.time()), venue="arena")):   # another venue's card
        res = r.resolve(code(bad))
        assert res.forged and res.staff is None, bad[:40]


def test_staff_sign_refuses_unknown_actions(tmp_path):
    import pytest
    priv, _, _ = keys(tmp_path, "staff")
    with pytest.raises(ValueError):
        sign(priv, CARD, "Jo", "admit-everyone", 1)
    with pytest.raises(ValueError):
        sign(priv, CONTROL, "Jo", "entry", 1)
    for until in (0, 1, 1 + 401 * 86400):   # no end, an end before the issue, longer than 400 days
        with pytest.raises(ValueError):
            sign_card(priv, "hall", "Jo", "clear", 1, until)
    with pytest.raises(ValueError):
        sign_card(priv, "", "Jo", "clear", 1, 2)   # a card is for a venue


def test_staff_issue_prints_cards_the_decoder_reads(tmp_path):
    priv, pub, _ = keys(tmp_path, "staff")
    r = run_gate_cli("staff", "issue", "--key", str(tmp_path / "keys" / "staff.key"), "--name", "Jo Usher",
                     "--venue", "hall", "--out", str(tmp_path / "cards"))
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines() if "\t" in line]
    assert [a for a, _, _, _ in rows] == ["entry", "exit", "info", "test", "clear"]
    verify = StaffVerifier([pub], "hall")
    for action, png, card_id, text in rows:
        [read] = Decoder().still(load_grey(png))
        assert read.text == text
        got = verify.verify(read.text, CARD, int(time.time()))
        assert (got.action, got.card_id) == (action, card_id)
    assert len({card_id for _, _, card_id, _ in rows}) == 5   # each card revocable on its own
    for args in (("--key", str(tmp_path / "keys" / "staff.pub"), "--venue", "hall"),   # not a private key
                 ("--key", str(tmp_path / "keys" / "staff.key")),                      # no venue
                 ("--key", str(tmp_path / "keys" / "staff.key"), "--venue", "hall", "--valid-days", "500")):
        bad = run_gate_cli("staff", "issue", *args, "--name", "X", "--out", str(tmp_path / "x"))
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr


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


# -- lifetime ----------------------------------------------------------------------------------------
def test_staff_issue_default_lifetime_is_printed_on_the_card(tmp_path):
    from PIL import Image
    priv, pub, _ = keys(tmp_path, "staff")
    t0 = int(time.time())
    r = run_gate_cli("staff", "issue", "--key", str(tmp_path / "keys" / "staff.key"), "--name", "Jo Usher",
                     "--venue", "hall", "--action", "clear", "--out", str(tmp_path / "cards"))
    assert r.returncode == 0, r.stderr
    [(action, png, card_id, text)] = [line.split("\t") for line in r.stdout.splitlines() if "\t" in line]
    got = StaffVerifier([pub], "hall").verify(text, CARD, t0)
    assert abs(got.valid_until - (t0 + 30 * 86400)) <= 5   # the default lifetime: 30 days
    img = Image.open(png)
    ends = time.strftime("%Y-%m-%d", time.localtime(got.valid_until))
    assert img.text["gate-card-id"] == card_id and img.text["gate-valid-until"].startswith(ends)
    assert f"valid until {ends}" in r.stdout
    grey = np.asarray(img.convert("L"))
    caption = grey[img.width:]   # the QR is square at the top; what it is and until when is printed beneath
    assert caption.shape[0] > 60 and (caption < 128).sum() > 500
    [read] = Decoder().still(load_grey(png))   # the caption does not get in the decoder's way
    assert read.text == text
    r = run_gate_cli("staff", "issue", "--key", str(tmp_path / "keys" / "staff.key"), "--name", "Jo",
                     "--venue", "hall", "--action", "exit", "--valid-days", "2", "--out", str(tmp_path / "c2"))
    [(_, _, _, short)] = [line.split("\t") for line in r.stdout.splitlines() if "\t" in line]
    assert abs(StaffVerifier([pub], "hall").verify(short, CARD, t0).valid_until - (t0 + 2 * 86400)) <= 5


def test_staff_card_without_an_end_or_living_too_long_is_forged(tmp_path):
    """Signed by the right key, for the right venue, but with no end or an end past 400 days: refused,
    so every revocation can be forgotten once the card it names has surely expired."""
    from gate.boxoffice import gt1
    from gate.boxoffice.purpose import STAFF_CARD
    priv, pub, _ = keys(tmp_path, "staff")
    now = int(time.time())
    v = StaffVerifier([pub], "hall")
    for until in (0, now + 401 * 86400):
        text = CARD + gt1.seal(priv, STAFF_CARD, ("0011223344556677", "Jo", "clear"), now, until, "hall")
        assert v.verify(text, CARD, now) is None
    ok = CARD + gt1.seal(priv, STAFF_CARD, ("0011223344556677", "Jo", "clear"), now, now + 400 * 86400, "hall")
    assert v.verify(ok, CARD, now).card_id == "0011223344556677"
    assert v.verify(ok, CARD, now + 400 * 86400 + 1) is None   # past its end


# -- revocation ---------------------------------------------------------------------------------------
def test_staff_revoked_card_is_forged_and_stays_revoked_whatever_list_comes_next(tmp_path, venue_keys):
    from gate.boxoffice.listguard import ListGuard
    from gate.core.events import Ticket
    from gate.state.updater import TicketUpdater
    priv, pub, _ = keys(tmp_path, "staff")
    now = int(time.time())
    clear = sign_card(priv, "hall", "Jo", "clear", now, now + 86400, "a1b2c3d4e5f60718")
    other = sign_card(priv, "hall", "Sam", "clear", now, now + 86400, "0000000000000001")
    store = TicketStore(tmp_path / "gate" / "tickets.db")
    r = Resolver(store, [StaffVerifier([pub], "hall")])
    guard = ListGuard("hall", [venue_keys.key.public_key()], venue_keys.secret)
    up = TicketUpdater(store.path, guard=guard)
    tickets = [Ticket("T1", "eve", "CODE-1")]
    assert r.resolve(code(clear)).staff is not None
    assert up.apply(store, venue_keys.pack(tickets, seq=1, series="box-a",
                                           staff_revoked=[("a1b2c3d4e5f60718", now + 400 * 86400)]))
    res = r.resolve(code(clear))
    assert res.forged and res.staff is None
    assert r.resolve(code(other)).staff.name == "Sam"   # revoked by id: the holder's other cards still work
    # the house publishes its own list, which never heard of the revocation: the card stays revoked
    assert up.apply(store, venue_keys.pack(tickets, seq=1, series="house-b", issued_ms=now * 1000 + 5000))
    assert r.resolve(code(clear)).forged
    # a publisher whose clock is behind: its list is superseded, yet its revocation counts (it only takes away)
    late = sign_card(priv, "hall", "Kim", "exit", now, now + 86400, "0000000000000002")
    assert not up.apply(store, venue_keys.pack(tickets, seq=1, series="late-c", issued_ms=(now - 3600) * 1000,
                                               staff_revoked=[("0000000000000002", now + 400 * 86400)]))
    assert guard.rejected == {"superseded": 1} and r.resolve(code(late)).forged
    # once the card has surely expired the revocation is forgotten (the store stays small)
    assert store.revoke_staff_cards([], now + 401 * 86400) == 0
    assert not store.staff_card_revoked("a1b2c3d4e5f60718")
    store.close()


def test_staff_lists_with_revoked_cards_still_read_by_receivers_from_before(venue_keys):
    """The new `staff` key sits in the signed header within the bounds older gates decode it with
    (at most 16 keys, no arrays, binary values): they ignore it and apply the list as before."""
    import msgpack

    from gate.boxoffice.keys import keyring
    from gate.boxoffice.lists import verify_list
    from gate.core.events import Ticket
    data = venue_keys.pack([Ticket("T1", "eve", "CODE-1")], seq=1,
                           staff_revoked=[(f"{i:016x}", int(time.time()) + 86400) for i in range(500)])
    env = msgpack.unpackb(data, max_str_len=16, max_map_len=8, max_array_len=8)
    inner = msgpack.unpackb(env["signed"], raw=False, strict_map_key=True, max_ext_len=0, max_str_len=64,
                            max_map_len=16, max_array_len=0)
    assert {"venue", "series", "seq", "issued", "salt", "tickets", "revoked", "body"} <= set(inner)
    assert len(inner["staff"]) == 500 * 12
    header, _ = verify_list(data, keyring([venue_keys.key.public_key()]))
    assert len(header.staff_revoked) == 500


def test_staff_publishers_carry_every_revocation_they_know(tmp_path, venue_keys):
    """The box office's revocations go into every list it packs; the house keeps those it reads in another
    publisher's list and carries them in its own."""
    from gate.boxoffice.keys import keyring
    from gate.boxoffice.lists import verify_list
    from gate.boxoffice.publish import ListPublisher
    from gate.core.events import Ticket
    from gate.house.lists import HouseLists
    from tests.conftest import house_config
    box = house_config(tmp_path, 1883, name="box", signing=venue_keys.signing_toml(publisher=True))
    pub = ListPublisher.from_config(box)
    until = int(time.time()) + 400 * 86400
    assert pub.revoked_cards.add([("00000000000000aa", until)]) == 1
    data = pub.pack([Ticket("T1", "eve", "CODE-1")])
    ring = keyring([venue_keys.key.public_key()])
    assert verify_list(data, ring)[0].staff_revoked == (("00000000000000aa", until),)
    house = house_config(tmp_path, 1883, name="house", signing=venue_keys.signing_toml(publisher=True))
    assert HouseLists(house).read(data) is not None
    again = ListPublisher.from_config(house, role="house").pack([Ticket("T1", "eve", "CODE-1")])
    assert verify_list(again, ring)[0].staff_revoked == (("00000000000000aa", until),)
