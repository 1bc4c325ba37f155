"""One test per verdict reason, through the one decision function."""

from gate.decide import GateRules, Resolution, annul, decide
from gate.events import History, Ticket

NOW = 1_800_000_000_000
RULES = GateRules("door-a", frozenset({"eve"}), frozenset({"stalls"}), "in", False)


def tk(**kw):
    base = dict(ticket_id="T1", event="eve", zone="stalls")
    base.update(kw)
    return Ticket(**base)


def v(res, hist=None, rules=RULES):
    return decide(res, hist or History(), rules, NOW)


def test_decide_ok():
    out = v(Resolution(tk()))
    assert (out.result, out.reason, out.ticket_ref) == ("admitted", "ok", "T1")


def test_decide_forged():
    assert v(Resolution(None, forged=True, ref="h:1")).reason == "forged"


def test_decide_unknown():
    out = v(Resolution(None, ref="h:abc"))
    assert (out.result, out.reason, out.ticket_ref) == ("rejected", "unknown", "h:abc")


def test_decide_revoked_by_status_and_by_list():
    assert v(Resolution(tk(status="revoked"))).reason == "revoked"
    assert v(Resolution(tk(), revoked=True)).reason == "revoked"


def test_decide_wrong_event():
    assert v(Resolution(tk(event="matinee"))).reason == "wrong_event"


def test_decide_wrong_gate():
    assert v(Resolution(tk(zone="balcony"))).reason == "wrong_gate"
    open_door = GateRules("door-a", frozenset({"eve"}))
    assert v(Resolution(tk(zone="balcony")), rules=open_door).reason == "ok"


def test_decide_not_yet_valid_and_expired_at_the_edges():
    assert v(Resolution(tk(valid_from=NOW + 1))).reason == "not_yet_valid"
    assert v(Resolution(tk(valid_from=NOW))).reason == "ok"
    assert v(Resolution(tk(valid_until=NOW - 1))).reason == "expired"
    assert v(Resolution(tk(valid_until=NOW))).reason == "ok"


def test_decide_already_used_says_when_and_where():
    out = v(Resolution(tk()), History(inside=True, first_ts=NOW - 60000, first_gate="door-b"))
    assert out.reason == "already_used" and "door-b" in out.detail


def test_decide_reentry_only_when_enabled():
    left = History(inside=False, first_ts=NOW - 60000, first_gate="door-a", exits=1)
    assert v(Resolution(tk()), left).reason == "already_used"
    rules = GateRules("door-a", frozenset({"eve"}), reentry=True)
    out = v(Resolution(tk()), left, rules)
    assert (out.result, out.reason) == ("admitted", "reentry")


def test_decide_exit():
    rules = GateRules("exit-1", frozenset({"eve"}), direction="out")
    out = v(Resolution(tk(status="revoked")), History(inside=True, first_ts=1), rules)
    assert (out.result, out.reason) == ("exited", "exit")  # leaving is never blocked


def test_decide_not_passed():
    out = annul(v(Resolution(tk())))
    assert (out.result, out.reason, out.ticket_ref) == ("annulled", "not_passed", "T1")


def test_decide_guard_order_forged_before_everything():
    # A forged code for a revoked, wrong-event ticket is reported as forged.
    assert v(Resolution(tk(event="x", status="revoked"), forged=True)).reason == "forged"
    # Revoked beats wrong event; wrong event beats expiry.
    assert v(Resolution(tk(event="x", status="revoked"))).reason == "revoked"
    assert v(Resolution(tk(event="x", valid_until=1))).reason == "wrong_event"
