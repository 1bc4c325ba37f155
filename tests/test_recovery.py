"""Bad days on disk: an overwritten or damaged SQLite file is named, moved aside with a
timestamp, and rebuilt where it can be; an outbox is never dropped silently."""

from __future__ import annotations

import logging
import time

from gate.state.outbox import Outbox
from tests.conftest import api, eve, gate_config, house_config, run_gate_cli, wait_for

GARBAGE = b"this file was overwritten by something else entirely\n" * 200


def _aside(path):
    return sorted(p for p in path.parent.glob(path.name + ".corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def test_recovery_corrupt_house_log_moved_aside_and_rebuilt_from_the_gates(tmp_path, broker, caplog):
    """`file is not a database` used to stop the house from starting, without naming the file."""
    from gate.house.build import build_house
    from gate.link import GateLink
    cfg = gate_config(tmp_path, port=broker.port, mqtt_on=True)
    hcfg = house_config(tmp_path, broker.port)
    house = build_house(hcfg)
    house.start()
    link = GateLink(cfg, tmp_path / "gate-outbox.db", profile="turnstile")
    outbox = Outbox(tmp_path / "gate-outbox.db")
    try:
        link.start()
        for i in range(3):
            outbox.append("door-a", int(time.time() * 1000), "eve", f"T{i}", "in", "admitted", "ok")
        wait_for(lambda: eve(api(hcfg))["admitted"] == 3, what="three admissions counted")
        house.close()
        db = tmp_path / "house" / "house.db"
        db.write_bytes(GARBAGE)
        for side in ("-wal", "-shm"):
            (tmp_path / "house" / ("house.db" + side)).unlink(missing_ok=True)
        caplog.set_level(logging.INFO)
        house = build_house(hcfg)
        house.start()
        said = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
        assert len(said) == 1 and str(db) in said[0] and "attendance log" in said[0], said
        assert len(_aside(db)) == 1 and _aside(db)[0].read_bytes() == GARBAGE   # kept for whoever wants it
        # The next scan shows the house what it is missing; the gate resends the rest.
        outbox.append("door-a", int(time.time() * 1000), "eve", "T9", "in", "admitted", "ok")
        wait_for(lambda: eve(api(hcfg))["admitted"] == 4, timeout=30, what="the log rebuilt from the gate")
    finally:
        link.close(drain_s=0)
        outbox.close()
        house.close()


def test_recovery_corrupt_ticket_store_set_aside_and_reloaded(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\n[storage]\ndir="{tmp_path}/s"\n')
    (tmp_path / "s").mkdir()
    db = tmp_path / "s" / "tickets.db"
    db.write_bytes(GARBAGE)
    t = tmp_path / "t.csv"
    t.write_text("ticket_id,code,event\nT1,C1,eve\nT2,C2,eve\n")
    r = run_gate_cli("tickets", "import", "-c", str(cfg), str(t))
    assert r.returncode == 0 and "imported 2 tickets" in r.stdout, r.stderr
    assert "Traceback" not in r.stderr and f"{db}" in r.stderr and "moved aside" in r.stderr, r.stderr
    assert len(_aside(db)) == 1
    r = run_gate_cli("doctor", "-c", str(cfg))
    assert "set aside" in r.stdout and _aside(db)[0].name in r.stdout, r.stdout


def test_recovery_damaged_outbox_keeps_every_row_it_can_read_and_the_file(tmp_path, caplog):
    """An outbox is never silently dropped: readable rows go on, the damaged file stays for recovery."""
    path = tmp_path / "outbox.db"
    ob = Outbox(path)
    for i in range(3000):
        ob.append("door-a", 1_800_000_000_000 + i, "eve", f"T{i:05d}-" + "x" * 80, "in", "admitted", "ok")
    ob.close()
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page) * 2 // 3
    data[middle * page: (middle + 2) * page] = GARBAGE[: 2 * page].ljust(2 * page, b"!")
    path.write_bytes(bytes(data))
    damaged = bytes(data)
    caplog.set_level(logging.INFO)
    ob = Outbox(path)
    try:
        kept = ob.depth()
        assert 0 < kept < 3000, kept
        said = [r.getMessage() for r in caplog.records if "outbox" in r.getMessage()]
        aside = _aside(path)
        assert len(aside) == 1 and aside[0].read_bytes() == damaged
        assert any(str(aside[0]) in m and "nothing was deleted" in m for m in said), said
        e = ob.append("door-a", 1_800_000_100_000, "eve", "NEW", "in", "admitted", "ok")
        assert e.seq > max(seq for seq, _ in ob.pending(0, 5000) if seq != e.seq)   # numbering goes on
    finally:
        ob.close()
