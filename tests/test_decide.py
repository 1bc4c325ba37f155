"""One test per verdict reason, through the one decision function."""

from gate.core.events import History, Ticket
from gate.decide import GateRules, Resolution, annul, decide

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


# -- entry rules: times of day are local, so the test clock is built from local times --------------
def local_ms(day, hh, mm=0):
    import time
    return int(time.mktime((2027, 1, day, hh, mm, 0, 0, 0, -1)) * 1000)


def rules(**kw):
    base = dict(gate="door-a", events=frozenset({"eve"}), zones=frozenset(), direction="in", reentry=True)
    base.update(kw)
    return GateRules(**base)


def test_decide_rules_doors_not_open_yet():
    r = rules(doors_open=19 * 60)
    before = decide(Resolution(tk()), History(), r, local_ms(15, 18, 59))
    assert (before.result, before.reason, before.detail) == ("rejected", "rules", "doors open at 19:00")
    assert decide(Resolution(tk()), History(), r, local_ms(15, 19, 0)).reason == "ok"
    assert decide(Resolution(tk()), History(), r, local_ms(15, 23, 59)).reason == "ok"


def test_decide_rules_doors_open_across_midnight_with_checkout():
    # The venue day runs 03:00 to 03:00: open from 19:00 until the check-out at 03:00.
    r = rules(doors_open=19 * 60, checkout=3 * 60)
    assert decide(Resolution(tk()), History(), r, local_ms(16, 1, 30)).reason == "ok"
    assert decide(Resolution(tk()), History(), r, local_ms(16, 3, 0)).reason == "rules"
    assert decide(Resolution(tk()), History(), r, local_ms(16, 12, 0)).detail == "doors open at 19:00"


def test_decide_rules_doors_before_everything_but_the_ticket_itself():
    # Someone "inside" before doors open is told about the doors, not about their earlier use.
    hist = History(inside=True, first_ts=local_ms(15, 20), first_gate="door-b", last_entry_ts=local_ms(15, 20))
    assert decide(Resolution(tk()), hist, rules(doors_open=19 * 60), local_ms(15, 10)).reason == "rules"
    assert decide(Resolution(tk(event="other")), History(), rules(doors_open=19 * 60), local_ms(15, 10)).reason == "wrong_event"


def test_decide_rules_reentry_interval_anti_passback():
    r = rules(reentry_after_min=15)
    left = local_ms(15, 21, 0)
    hist = History(inside=False, first_ts=local_ms(15, 20), first_gate="door-a", exits=1,
                   last_entry_ts=local_ms(15, 20), last_exit_ts=left, entries=(local_ms(15, 20),))
    soon = decide(Resolution(tk()), hist, r, left + 14 * 60_000 + 1)
    assert (soon.reason, soon.detail) == ("rules", "re-entry 15 min after leaving: 1 min to go")
    assert decide(Resolution(tk()), hist, r, left + 15 * 60_000).reason == "reentry"


def test_decide_rules_entries_per_day():
    r = rules(entries_per_day=2, checkout=3 * 60)
    two = (local_ms(15, 21), local_ms(15, 19))
    hist = History(inside=False, first_ts=two[1], first_gate="door-a", exits=2, last_entry_ts=two[0],
                   last_exit_ts=local_ms(15, 22), entries=two)
    out = decide(Resolution(tk()), hist, r, local_ms(15, 23))
    assert (out.reason, out.detail) == ("rules", "2 entries a day, used up")
    # the next venue day (after 03:00) starts at zero
    assert decide(Resolution(tk()), hist, r, local_ms(16, 3, 1)).reason == "reentry"
    # without a check-out time the day starts at midnight
    assert decide(Resolution(tk()), hist, rules(entries_per_day=2), local_ms(16, 0, 1)).reason == "reentry"
    assert decide(Resolution(tk()), hist, rules(entries_per_day=3), local_ms(15, 23)).reason == "reentry"


def test_decide_rules_checkout_means_nobody_is_inside_next_day():
    entered = local_ms(15, 20)
    hist = History(inside=True, first_ts=entered, first_gate="door-a", last_entry_ts=entered, entries=(entered,))
    assert decide(Resolution(tk()), hist, rules(checkout=3 * 60), local_ms(16, 2, 59)).reason == "already_used"
    assert decide(Resolution(tk()), hist, rules(checkout=3 * 60), local_ms(16, 3, 0)).reason == "reentry"
    # no check-out configured: still inside
    assert decide(Resolution(tk()), hist, rules(), local_ms(16, 19)).reason == "already_used"
    # the check-out counts as leaving for the anti-passback interval
    assert decide(Resolution(tk()), hist, rules(checkout=3 * 60, reentry_after_min=30),
                  local_ms(16, 3, 10)).reason == "rules"


def test_decide_rules_time_of_day_parsing():
    import pytest

    from gate.core.timeofday import parse_time_of_day
    assert parse_time_of_day("19:00") == 1140 and parse_time_of_day("") is None
    for bad in ("7pm", "24:00", "19:60", "9:00", "19:0", " 19:00", "１９:００"):
        with pytest.raises(ValueError):
            parse_time_of_day(bad)
