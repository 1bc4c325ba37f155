import json
from datetime import datetime, timezone

import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.core.errors import TicketFileError
from gate.state.tickets import TicketStore


def test_tickets_csv_import_columns_in_any_order(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("event,extra,code,ticket_id,tags\neve,x,C1,T1,member; wheelchair\n")
    [t] = read_ticket_file(p)
    assert (t.ticket_id, t.code, t.event, t.tags, t.status) == ("T1", "C1", "eve", ("member", "wheelchair"), "valid")


def test_tickets_json_import(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps([{"ticket_id": "T1", "code": "C1", "event": "eve", "seat": "A1",
                              "valid_until": "2026-11-23T23:00:00+00:00"}]))
    [t] = read_ticket_file(p)
    expected = int(datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert t.seat == "A1" and t.valid_until == expected


def test_tickets_bad_value_names_row_and_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ticket_id,code,event,valid_from\nT1,C1,eve,\nT2,C2,eve,tomorrow-ish\n")
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert (e.value.row, e.value.column) == (3, "valid_from")
    assert "row 3, column 'valid_from'" in str(e.value)


def test_tickets_duplicate_ids_and_codes(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ticket_id,code,event\nT1,C1,eve\nT2,C2,eve\nT1,C3,eve\n")
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert (e.value.row, e.value.column) == (4, "ticket_id") and "first at row 2" in str(e.value)
    p.write_text("ticket_id,code,event\nT1,C1,eve\nT2,C1,eve\n")
    with pytest.raises(TicketFileError, match="duplicate code"):
        read_ticket_file(p)


def test_tickets_truncated_and_corrupt_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ticket_id,code,event\nT1,C1,eve\nT2,C2\n")
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert e.value.row == 3 and "2 fields" in str(e.value)
    p.write_text('ticket_id,code,event\nT1,"C1,eve\n')
    with pytest.raises(TicketFileError, match="malformed CSV"):
        read_ticket_file(p)
    p.write_text("")
    with pytest.raises(TicketFileError, match="header"):
        read_ticket_file(p)
    p.write_text("ticket,code,event\n")
    with pytest.raises(TicketFileError, match="ticket_id"):
        read_ticket_file(p)


def test_tickets_wrong_encoding_names_the_row(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("ticket_id,code,event,holder\nT1,C1,eve,Ann\nT2,C2,eve,Zoë\n".encode("latin-1"))
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert e.value.row == 3 and "not UTF-8" in str(e.value)


def test_tickets_binary_and_control_characters_rejected(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"ticket_id,code,event\nT1,C\x001,eve\n")
    with pytest.raises(TicketFileError, match="binary"):
        read_ticket_file(p)
    p.write_text("ticket_id,code,event\nT1,C\x071,eve\n")
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert e.value.column == "code" and "control" in str(e.value)


def test_tickets_4kb_code_rejected(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ticket_id,code,event\nT1," + "A" * 4096 + ",eve\n")
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert e.value.column == "code"


def test_tickets_json_errors(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('[{"ticket_id": "T1", "code": "C1", "event": "eve"},\n {"ticket_id": 5, "code": "C2"')
    with pytest.raises(TicketFileError, match="invalid JSON") as e:
        read_ticket_file(p)
    assert e.value.row == 2
    p.write_text('[{"ticket_id": "T1", "code": "C1", "event": "eve"}, {"ticket_id": "T2", "code": "C2"}]')
    with pytest.raises(TicketFileError) as e:
        read_ticket_file(p)
    assert (e.value.row, e.value.column) == (2, "event")


def test_tickets_bad_file_leaves_store_unchanged(tmp_path, tickets_csv):
    store = TicketStore(tmp_path / "s.db")
    store.replace_all(read_ticket_file(tickets_csv))
    before = (store.count(), store.version)
    bad = tmp_path / "bad.csv"
    bad.write_text("ticket_id,code,event\nX1,Y1,eve\nX1,Y2,eve\n")
    with pytest.raises(TicketFileError):
        store.replace_all(read_ticket_file(bad))
    assert (store.count(), store.version) == before
    assert store.by_code("CODE-0001").holder == "Ada Lovelace"


def test_tickets_progress_reported_on_large_files(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("ticket_id,code,event\n" + "".join(f"T{i},C{i},eve\n" for i in range(25000)))
    seen = []
    tickets = read_ticket_file(p, progress=lambda done, total: seen.append(done))
    assert len(tickets) == 25000 and seen[:2] == [10000, 20000] and seen[-1] == seen[-1] >= 25000


def test_tickets_history_records_and_annul(tmp_path):
    store = TicketStore(tmp_path / "s.db")
    store.record("T1", "admitted", 1000, "door-a")
    h = store.history("T1")
    assert h.inside and h.first_ts == 1000 and h.first_gate == "door-a"
    store.record("T1", "admitted", 500, "door-b")  # an earlier admission elsewhere, synced late
    assert store.history("T1").first_gate == "door-b"
    store.record("T2", "admitted", 2000, "door-a")
    store.record("T2", "annulled", 2000, "door-a")
    assert store.history("T2").first_ts is None and not store.history("T2").inside


def test_tickets_only_the_admitting_gate_can_annul(tmp_path):
    """Another gate (a stolen gate credential) saw door-a's admission on the bus and sends an
    `annulled` with its time: the ticket must stay used at every door."""
    store = TicketStore(tmp_path / "s.db")
    store.record("T1", "admitted", 1000, "door-a")
    store.record_remote([("T1", "annulled", 1000, "door-b")], 1000)
    h = store.history("T1")
    assert h.inside and h.first_ts == 1000 and h.first_gate == "door-a"
    store.record("T1", "exited", 2000, "door-a")
    store.record("T1", "admitted", 3000, "door-c")        # a re-entry at door-c...
    store.record("T1", "annulled", 3000, "door-b")        # ...that door-b cannot undo
    assert store.history("T1").inside
    store.record("T1", "annulled", 3000, "door-c")        # door-c's own annulment does
    h = store.history("T1")
    assert not h.inside and h.first_gate == "door-a"


def _import_capped(tmp_path, ticket_file, address_space):
    """`gate tickets import` in a process with a small address space (as on a small Pi)."""
    import resource
    import subprocess
    import sys
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\n[storage]\ndir="{tmp_path}/s"\n')

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    return subprocess.run([sys.executable, "-m", "gate.cli", "tickets", "import", "-c", str(cfg), str(ticket_file)],
                          capture_output=True, text=True, preexec_fn=cap, timeout=120)


def test_tickets_giant_line_refused_before_parsing(tmp_path):
    """A 1 GB line once peaked at 7 GB RSS before it was refused: now the line is refused as it is read,
    in a process that could not even hold the file twice."""
    p = tmp_path / "huge.csv"
    with p.open("wb") as f:
        f.write(b"ticket_id,code,event\nT1,C1,eve\nT2,")
        chunk = b"x" * (1 << 20)
        for _ in range(300):
            f.write(chunk)
        f.write(b",eve\n")
    r = _import_capped(tmp_path, p, 400 * 1024 * 1024)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "row 3" in r.stderr and "longer than" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_tickets_deep_json_nesting_refused_without_recursion_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(TicketFileError, match="nested more than"):
        read_ticket_file(p)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"tickets": [{"ticket_id": "T1", "code": "C[{1", "event": "eve", "tags": ["a", "b"]}]}))
    assert read_ticket_file(ok)[0].code == "C[{1"   # brackets inside strings do not count


def test_tickets_patron_text_cannot_drive_the_terminal(tmp_path):
    """ANSI escape sequences in holder names were printed raw by `gate scan` and the console display."""
    import io

    from gate.core.events import ScanEvent, Ticket, Verdict, Welcome
    from gate.door.display import ConsoleDisplay
    from gate.verdict_text import display_lines, verdict_line
    evil = "Ada \x1b[2J\x1b]0;owned\x07Lovelace\u202e\x9b31m"
    t = Ticket(ticket_id="T1", code="C1", event="eve", holder=evil, seat="B\x1b[31m12")
    v = Verdict("admitted", "ok", ticket=t, ticket_ref="T1")
    w = Welcome(greeting="Hi \x1b[5mthere")
    e = ScanEvent(id="x", gate="door-a", seq=1, ts=1_800_000_000_000, event="eve", ticket="T1", dir="in",
                  result="admitted", reason="ok", attention=[])
    line = verdict_line(v, w, e)
    assert "Ada Lovelace" in line and "B12" in line and "Hi there" in line
    assert all(ch.isprintable() for ch in line)
    out = io.StringIO()
    d = ConsoleDisplay(out)
    d.show("ok", display_lines(v, w))
    d.wait_idle()
    d.close()
    assert "Ada Lovelace" in out.getvalue() and "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
