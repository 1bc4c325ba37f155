"""The guard order of a presented code, from outside the admission: real parts built by the
composition root (SQLite store and outbox, gpiozero's MockFactory, Ed25519-signed cards and
tickets), codes handed to `Admission.present()` as a reader would hand them over."""

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.boxoffice.gt1 import sign_ticket
from gate.boxoffice.keys import load_private_key, new_keypair
from gate.boxoffice.staff import sign_card, sign_control
from gate.boxoffice.ticketfile import read_ticket_file
from gate.build import build_gate
from gate.camera import MemorySource
from gate.core.clock import now_ms
from gate.core.events import Code, DoorFault, VenueControl
from gate.feedback import Feedback
from gate.state.tickets import TicketStore
from tests.conftest import gate_config

RELAY = 24


def code(text) -> Code:
    raw = text if isinstance(text, bytes) else text.encode()
    return Code("qr", raw, raw.decode("utf-8", "backslashreplace"))


@pytest.fixture
def door(tmp_path, mock_factory, tickets_csv):
    """A built turnstile gate with a ticket list, a ticket key and a staff key; what it showed and decided."""
    ticket_key, ticket_pub = new_keypair(tmp_path / "keys", "tickets")
    staff_key, staff_pub = new_keypair(tmp_path / "keys", "staff")
    cfg = gate_config(tmp_path, keys=f'["{ticket_pub}"]')
    cfg.signing.staff_keys = [str(staff_pub)]
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    fb = Feedback.from_config(cfg.feedback, pin_factory=mock_factory)
    shown, verdicts = [], []
    real_show = fb.show
    fb.show = lambda reason, level="", lines=(), **kw: (shown.append((reason, tuple(lines))),
                                                         real_show(reason, level, lines, **kw))
    parts = build_gate(cfg, MemorySource([], 0), pin_factory=mock_factory, feedback=fb, connect=False,
                       on_verdict=lambda v, w, e: verdicts.append((v, w, e)))
    staff = load_private_key(staff_key)
    parts.card = lambda action, key=staff: code(sign_card(key, "hall", "Jo Usher", action, int(time.time()),
                                                         int(time.time()) + 3600))
    parts.staff_key = staff
    parts.ticket_key = load_private_key(ticket_key)
    parts.shown, parts.verdicts = shown, verdicts
    yield parts
    parts.close()


def test_admission_latched_gate_obeys_staff_cards_and_looks_nothing_else_up(door):
    adm, store = door.admission, door.store
    adm.door_fault(DoorFault("door held open 0.5 s"))
    forged_ticket = code(sign_ticket(Ed25519PrivateKey.generate(), "S1", "eve"))
    forged_card = code(sign_card(Ed25519PrivateKey.generate(), "hall", "Mallory", "clear", int(time.time()),
                                 int(time.time()) + 60))
    for c in (forged_ticket, forged_card, code("CODE-0001"), code(bytes(range(0, 256, 3)))):
        assert adm.present(c, now_ms()) is None
        assert door.shown[-1] == ("out_of_order", ("OUT OF ORDER", "door held open 0.5 s"))
    # nothing decided, recorded or even looked up: the binary code was not counted as a reject
    assert door.verdicts == [] and door.outbox.depth() == 0 and store.history("T1").first_ts is None
    assert vars(door.resolver.rejects) == {"oversized": 0, "binary": 0, "control": 0, "kinds": {}}
    assert door.modes.latched() == "door held open 0.5 s"     # the forged clear card changed nothing
    assert adm.present(door.card("info"), now_ms()) is None   # a staff card is obeyed while latched...
    assert door.modes.mode == "info" and door.modes.latched() and door.shown[-1][0] == "staff"
    assert adm.present(code("CODE-0001"), now_ms()) is None and door.verdicts == []   # ...and the latch holds
    assert adm.present(door.card("clear"), now_ms()) is None
    assert door.modes.latched() is None and not door.turnstile.latched
    adm.present(forged_ticket, now_ms())
    adm.present(code("CODE-0001"), now_ms())
    assert [(v.reason, e.mode) for v, _, e in door.verdicts] == [("forged", "info"), ("ok", "info")]


def test_admission_lookup_sees_the_real_history_and_records_nothing(door, mock_factory):
    adm, store = door.admission, door.store
    first = adm.present(code("CODE-0001"), now_ms())
    assert first.reason == "ok" and store.history("T1").inside
    adm.present(door.card("info"), now_ms())
    assert adm.present(code("CODE-0001"), now_ms()).reason == "already_used"   # the door would refuse it
    v = adm.present(code("CODE-0002"), now_ms())
    assert v.admitted and store.history("T2").first_ts is None                   # would admit; not used
    assert [st.state for st in mock_factory.pin(RELAY).states].count(True) == 1  # T1's release only
    adm.present(door.card("test"), now_ms())                                    # the venue is live: refused
    assert door.modes.mode == "info" and door.shown[-1][0] == "rules"
    adm.venue_control(VenueControl(sign_control(door.staff_key, "hall", "stage", "test", int(time.time())).encode()))
    adm.present(door.card("test"), now_ms())                                    # the venue rehearses: obeyed
    assert adm.present(code("CODE-0001"), now_ms()).reason == "already_used"   # used live: never again
    assert adm.present(code("CODE-0002"), now_ms()).reason == "ok"             # rehearsal uses apart
    assert store.history("T2", "test").inside and store.history("T2").first_ts is None
    got = [(v.reason, e.mode, e.seq > 0) for v, _, e in door.verdicts]
    assert got == [("ok", "live", True), ("already_used", "info", True), ("ok", "info", True),
                   ("already_used", "test", True), ("ok", "test", True)]   # look-ups are sent (mode info), never counted


def test_admission_welcome_travels_beside_the_verdict(door):
    """The hospitality result is not written into the (frozen) verdict: it comes beside it."""
    import dataclasses
    v = door.admission.present(code("CODE-0002"), now_ms())
    [(seen, w, e)] = door.verdicts
    assert seen is v and (w.attention, w.level, w.greeting, w.assist) == (
        ("wheelchair",), "assist", "Wheelchair space C3", True)
    assert e.attention == ["wheelchair"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.reason = "ok"
