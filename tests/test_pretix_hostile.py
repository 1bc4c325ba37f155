"""The house against a hostile pretix (tests/pretix_hostile.py): sync down, one test per finding.

Empty and shrinking lists are held for a person; bad rows are set aside and never crash the
link again; size, depth, page and time bounds end a sync with a clear error; the incremental
marker comes from pretix's data, never from a `Date` header; the config check catches URLs and
tokens that cannot work. Uploads: tests/test_pretix_hostile_uploads.py.
"""

import json
import logging
import sqlite3
import time

import pytest

from gate.house.pretix_list import build_list
from gate.house.pretix_sync import PretixSync
from tests.conftest import Collector, run_gate_cli, wait_for
from tests.hostile_house import TOKEN, house_toml, list_header, retained_list, start_house
from tests.pretix_hostile import Answer, HostilePretix, deep_json, iso

YEAR_S = 365 * 86400


@pytest.fixture
def srv():
    s = HostilePretix().start()
    yield s
    s.stop()


@pytest.fixture
def houses():
    made = []
    yield made
    for svc in made:
        svc.close()


def test_pretix_hostile_empty_first_sync_is_held_until_a_person_accepts(srv, broker, tmp_path, venue_keys):
    srv.add_positions(30)
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync")
    assert r.returncode == 0, r.stderr
    first = retained_list(broker.port)
    assert list_header(first, venue_keys).tickets == 30
    # A new house database (set aside, a new machine), and a check-in list that answers empty.
    for f in (tmp_path / "house").glob("house.db*"):
        f.unlink()
    srv.positions.clear()
    srv.orders.clear()
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync")
    assert r.returncode == 1
    assert "held back" in r.stderr and "came back empty" in r.stderr and "--accept-shrink" in r.stderr
    assert retained_list(broker.port) == first            # the gates keep the last list
    st = run_gate_cli("house", "-c", str(path), "pretix", "status")
    assert st.returncode == 0 and "HELD BACK" in st.stdout
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync", "--accept-shrink")
    assert r.returncode == 0 and "accepted by hand" in r.stdout, r.stdout + r.stderr
    assert list_header(retained_list(broker.port), venue_keys).tickets == 0
    # Accepted once, an empty list stays accepted; the status no longer says held.
    assert run_gate_cli("house", "-c", str(path), "pretix", "sync").returncode == 0
    assert "HELD BACK" not in run_gate_cli("house", "-c", str(path), "pretix", "status").stdout


@pytest.mark.slow
def test_pretix_hostile_running_house_holds_a_shrinking_list_and_alerts_once(srv, broker, tmp_path, venue_keys,
                                                                            houses):
    codes = srv.add_positions(40)
    alerts = Collector(broker.port, "gate/hall/house/alerts")
    lists = Collector(broker.port, "gate/hall/tickets")
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys, every=1)
    svc = start_house(cfg)
    houses.append(svc)
    try:
        wait_for(lambda: lists.on("gate/hall/tickets"), 10, what="the first list")
        with srv.lock:                   # a mass cancellation, all at once (no sync sees half of it)
            for code in codes[:30]:
                srv.set_order_status(code, "c")
        held = wait_for(lambda: svc.api()["pretix"]["held"], 15, what="the result held back")
        assert held["why"] == "shrink" and (held["base_valid"], held["new_valid"]) == (40, 10)
        syncs = srv.count("GET", r"/events/gala/$")
        wait_for(lambda: srv.count("GET", r"/events/gala/$") >= syncs + 3, 15, what="three more syncs")
        api = svc.api()
        assert len(lists.on("gate/hall/tickets")) == 1        # nothing published while held
        sent = [json.loads(p) for p in alerts.on("gate/hall/house/alerts")]
        assert len(sent) == 1 and sent[0]["kind"] == "sync" and sent[0]["level"] == "critical"
        assert "--accept-shrink" in sent[0]["text"] and set(sent[0]) == {"kind", "level", "event", "gate", "text",
                                                                           "tags", "ts"}
        assert [a["key"] for a in api["alarms"]] == ["sync:held"]
        # A person looks and accepts, beside the running house.
        r = run_gate_cli("house", "-c", str(path), "pretix", "sync", "--accept-shrink")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not svc.api()["pretix"]["held"] and not svc.api()["alarms"], 15, what="held cleared")
        cleared = json.loads(alerts.on("gate/hall/house/alerts")[-1])
        assert cleared["level"] == "info" and "resolved" in cleared["tags"]
    finally:
        alerts.close()
        lists.close()


def test_pretix_hostile_reshaped_positions_are_held_and_set_aside(srv, broker, tmp_path, venue_keys):
    srv.add_positions(12)
    for p in srv.positions:          # pretix's API changed shape: `secret` is now `code`
        p["code"] = p.pop("secret")
    path, _ = house_toml(tmp_path, srv, broker.port, venue_keys)
    r = run_gate_cli("house", "-c", str(path), "pretix", "sync")
    assert r.returncode == 1 and "12 of 12 positions pretix sent were unusable" in r.stderr, r.stderr
    assert retained_list(broker.port) is None
    st = run_gate_cli("house", "-c", str(path), "pretix", "status").stdout
    assert "12 no usable secret" in st and "HELD BACK" in st


def test_pretix_hostile_duplicates_and_missing_positionid_are_set_aside_never_crash(srv, broker, tmp_path,
                                                                                   venue_keys, houses):
    srv.add_positions(20)
    srv.positions[1]["secret"] = srv.positions[0]["secret"]       # two positions, one secret
    del srv.positions[2]["positionid"]                             # unsigned, and no position number
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    svc = start_house(cfg)
    p = svc.api()["pretix"]
    assert p["sync_error"] == "" and p["positions"] == 18 and p["set_aside_positions"]["count"] == 2
    assert {r["reason"][:10] for r in p["set_aside_positions"]["rows"]} == {"its secret", "no positio"}
    assert list_header(retained_list(broker.port), venue_keys).tickets == 18
    svc.close()
    # What an older house committed before checking: the same secret twice in its own table.
    db = sqlite3.connect(str(tmp_path / "house" / "house.db"))
    with db:
        db.execute("DROP INDEX pretix_positions_secret_u")
        db.execute("DROP INDEX pretix_positions_ticket_u")
        db.execute("INSERT INTO pretix_positions SELECT id + 100000, secret, ticket_id, order_code, positionid, "
                   "event, item, subevent, holder, seat, email, attention, blocked, order_status, "
                   "valid_if_pending, valid_from, valid_until FROM pretix_positions LIMIT 3")
    db.close()
    svc = start_house(cfg)
    houses.append(svc)
    wait_for(lambda: svc.pretix.syncs >= 1, 20, what="a sync after the restart")
    assert svc.api()["pretix"]["sync_error"] == "" and svc.api()["pretix"]["positions"] == 18
    assert all(w["failures"] == 0 for w in svc.api()["workers"])


def test_pretix_hostile_too_many_positions_is_a_clear_sync_error(srv, broker, tmp_path, venue_keys, houses, caplog):
    srv.add_positions(5)
    srv.on("GET", "/positions/", Answer(200, {"count": 300_000, "next": "x", "results": srv.positions[:5]}))
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    with caplog.at_level(logging.WARNING):
        svc = start_house(cfg)
        houses.append(svc)
        err = wait_for(lambda: svc.api()["pretix"]["sync_error"], 10, what="the sync error")
    assert "300,000 items; the house takes at most 250,000" in err
    assert srv.count("GET", "/positions/") == 1
    assert all(w["state"] == "running" and w["failures"] == 0 for w in svc.api()["workers"])
    assert not [r for r in caplog.records if r.exc_info]       # said in words, no traceback
    assert [a["key"] for a in svc.api()["alarms"]] == ["sync:error"]


def test_pretix_hostile_huge_and_endless_pages_are_bounded(srv, tmp_path, broker, venue_keys):
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    (tmp_path / "house").mkdir()
    sync = PretixSync(cfg, tmp_path / "house" / "house.db", TOKEN)
    try:
        srv.add_positions(3)
        pad = "x" * 3_500_000               # each page just under the 4 MB cap, and it always says "next"
        srv.on("GET", "/positions/", lambda path, q, b: Answer(200, {
            "count": 100, "next": "more", "results": [dict(srv.positions[0], id=int(q["page"]),
                                                           secret=f"s{q['page']}", attendee_name=pad[:200])]
            * 50 + [pad]}))
        with pytest.raises(Exception) as e:
            sync.sync()
        assert "still more pages after 3" in str(e.value) and srv.count("GET", "/positions/") == 3
        srv.clear()
        srv.on("GET", "/positions/", Answer(200, b'{"count": 1, "results": ["' + b"y" * 8_000_000 + b'"]}'))
        with pytest.raises(Exception) as e:
            sync.sync()
        assert "answer larger than 4,194,304 bytes" in str(e.value) and e.value.kind == "answer"
    finally:
        sync.close()


def test_pretix_hostile_deep_answers_are_refused_in_words(srv, broker, tmp_path, venue_keys, houses, caplog):
    srv.add_positions(4)
    srv.on("GET", "/positions/", Answer(200, deep_json(100_000)))
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    with caplog.at_level(logging.WARNING):
        svc = start_house(cfg)
        houses.append(svc)
        err = wait_for(lambda: svc.api()["pretix"]["sync_error"], 10, what="the sync error")
    assert "nested deeper than 24 levels" in err
    assert not [r for r in caplog.records if r.exc_info]
    assert all(w["failures"] == 0 for w in svc.api()["workers"])


def test_pretix_hostile_slow_answers_are_cut_off_and_do_not_hold_up_uploads(srv, broker, tmp_path, venue_keys,
                                                                           houses):
    from gate.bus.codec import pack_scan
    from tests.conftest import publish_raw
    from tests.hostile_house import scan
    srv.add_positions(6)
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys, every=1, timeout=1.0)
    svc = start_house(cfg)
    houses.append(svc)
    wait_for(lambda: svc.api()["pretix"]["positions"] == 6, 10, what="the first sync")
    page = json.dumps({"count": 6, "next": None, "results": srv.positions}).encode()
    srv.on("GET", "/orders/", Answer(200, page, trickle=(64, 0.5)))     # a few bytes every half second
    err = wait_for(lambda: svc.api()["pretix"]["sync_error"], 15, what="the slow sync cut off")
    assert "no complete answer within 2 s" in err
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan(t)) for t in srv.ticket_ids()])
    wait_for(lambda: svc.api()["pretix"]["uploaded"] == 6, 15, what="uploads while every sync is stuck")
    assert len(srv.nonces) == 6


def test_pretix_hostile_date_header_ahead_never_loses_a_cancellation(srv, broker, tmp_path, venue_keys):
    srv.date_shift_s = 10 * YEAR_S                 # pretix's (or a proxy's) Date header, ten years ahead
    codes = srv.add_positions(5)
    for i, code in enumerate(codes):               # orders last changed ten minutes ago and since
        srv.orders[code]["last_modified"] = iso(time.time() - 600 + 10 * i)
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    (tmp_path / "house").mkdir()
    sync = PretixSync(cfg, tmp_path / "house" / "house.db", TOKEN)
    try:
        assert sync.sync().full
        assert int(sync.state("since_ms")) <= time.time() * 1000
        srv.set_order_status(codes[2], "c")
        r = sync.sync()
        assert not r.full and r.changed_orders == 2   # the newest again (the marker's margin), and the cancelled
        tickets = {t.ticket_id: t.status for t in sync.ticket_list().tickets()}
        assert tickets[f"{codes[2]}-1"] == "revoked" and list(tickets.values()).count("valid") == 4
    finally:
        sync.close()


def test_pretix_hostile_marker_in_the_future_is_refused_and_a_full_sync_made(srv, broker, tmp_path, venue_keys):
    srv.data_shift_s = 86400                       # pretix's own clock a day ahead: last_modified in the future
    codes = srv.add_positions(4)
    path, cfg = house_toml(tmp_path, srv, broker.port, venue_keys)
    (tmp_path / "house").mkdir()
    sync = PretixSync(cfg, tmp_path / "house" / "house.db", TOKEN)
    try:
        assert sync.sync().full
        assert int(sync.state("since_ms")) <= time.time() * 1000      # never past the house's own clock
        srv.data_shift_s = 0
        srv.set_order_status(codes[0], "c")        # pretix's clock put right, then an order cancelled
        assert sync.sync().changed_orders >= 1
        assert {t.ticket_id: t.status for t in sync.ticket_list().tickets()}[f"{codes[0]}-1"] == "revoked"
        with sync.db:                              # a marker a year ahead (a database from elsewhere)
            sync.db.execute("INSERT OR REPLACE INTO pretix_state VALUES ('since_ms', ?)",
                            (int((time.time() + YEAR_S) * 1000),))
        r = sync.sync()
        assert r.full and "ahead of the house's clock" in sync.marker_note
        assert int(sync.state("since_ms")) <= time.time() * 1000
        # the house still builds its list from it
        from gate.boxoffice.publish import ListPublisher
        assert build_list(sync, ListPublisher.from_config(cfg, role="house"))[2] == 4
    finally:
        sync.close()


@pytest.mark.parametrize("token, said", [("tok\u00a0en123", "U+00A0"), ("t\u00e9ken123", "U+00E9"),
                                         ("abc\u201cdef", "U+201C"), ("Token ", "holds no token")])
def test_config_check_refuses_a_pretix_token_http_cannot_carry(srv, tmp_path, venue_keys, token, said):
    path, _ = house_toml(tmp_path, srv, 1883, venue_keys, token=token, parsed=False)
    r = run_gate_cli("config", "check", str(path))
    assert r.returncode == 2 and "pretix.token_file" in r.stderr + r.stdout and said in r.stderr + r.stdout


@pytest.mark.parametrize("url, said", [("ftp://pretix.example.org", "scheme 'ftp'"),
                                       ("https://user:pw@pretix.example.org", "no user or password"),
                                       ("https://pretix..example.org", "not a host name"),
                                       ("https://pretix.example.org:99999", "port"),
                                       ("https://pretix.example.org/?x=1", "no ?query")])
def test_config_check_refuses_a_pretix_url_that_cannot_work(srv, tmp_path, venue_keys, url, said):
    path, _ = house_toml(tmp_path, srv, 1883, venue_keys, parsed=False)
    path.write_text(path.read_text().replace(f'url = "{srv.url}"', f'url = "{url}"'))
    r = run_gate_cli("config", "check", str(path))
    assert r.returncode == 2 and said in r.stderr + r.stdout, r.stderr + r.stdout
    good = run_gate_cli("config", "check", str(house_toml(tmp_path, srv, 1883, venue_keys, name="ok")[0]))
    assert good.returncode == 0, good.stderr + good.stdout


@pytest.mark.parametrize("base, new, seen, skipped, accepted, full, why", [
    ((100, 90), (100, 90), 100, 0, False, True, ""),            # nothing unusual
    ((100, 90), (0, 0), 0, 0, False, True, "empty"),            # an empty answer
    ((0, 0), (0, 0), 0, 0, False, True, "empty"),               # empty, and nothing known of the gates
    ((0, 0), (0, 0), 0, 0, True, False, ""),                    # ... unless a person accepted an empty list
    ((100, 90), (49, 45), 49, 0, False, True, "shrink"),        # more than half gone
    ((100, 90), (60, 40), 60, 0, False, True, "shrink"),        # more than half of the valid ones gone
    ((100, 90), (100, 0), 100, 0, False, False, "shrink"),      # every valid ticket gone (all cancelled)
    ((12, 12), (5, 5), 5, 0, False, False, ""),                 # a small event: fewer than 10 gone
    ((100, 90), (40, 40), 80, 41, False, True, "skipped"),      # most positions unusable
    ((100, 90), (99, 89), 2, 1, False, False, ""),              # one bad position in a changed order
])
def test_pretix_guard_holds_what_needs_a_person(base, new, seen, skipped, accepted, full, why):
    from gate.house.pretix_guard import judge
    assert judge(*base, *new, seen, skipped, accepted, full) == why
