"""Entry rules through the real loop: rendered tickets read by the real decoder,
a real SQLite store, gpiozero's MockFactory. The rules take the time of day from
the frame's own wall clock, so the windows below are set around the real now."""

import time

import numpy as np

from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import gate_config

RNG = np.random.default_rng(13)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


def hhmm(offset_min: float) -> str:
    return time.strftime("%H:%M", time.localtime(time.time() + offset_min * 60))


def run(tmp_path, mock_factory, tickets_csv, codes, history=(), **kw):
    """Scan `codes` in order on a fresh gate whose store already holds `history`
    ((ticket, result, minutes ago) tuples, as synced from another door)."""
    cfg = gate_config(tmp_path, **kw)
    store = TicketStore(cfg.storage.dir + "/tickets.db")
    store.replace_all(read_ticket_file(tickets_csv))
    now = int(time.time() * 1000)
    for ticket, result, ago in history:
        store.record(ticket, result, now - int(ago * 60_000), "door-b")
    store.close()
    frames = []
    for c in codes:
        frames += [EMPTY] * 3 + [compose(c, "clean", rng=RNG)] * 3
    verdicts = []
    s = Scanner(cfg, MemorySource(frames + [EMPTY] * 3, 0), pin_factory=mock_factory, connect=False,
                on_verdict=lambda v, w, e: verdicts.append((v, e)))
    assert s.run() == 0
    return [(v.result, v.reason, v.detail) for v, _ in verdicts]


def test_rules_doors_not_open_yet_through_the_loop(tmp_path, mock_factory, tickets_csv):
    opens = hhmm(120)
    got = run(tmp_path, mock_factory, tickets_csv, ["CODE-0001"],
              gate_extra=f'doors_open = "{opens}"\ncheckout = "{hhmm(-120)}"')
    assert got == [("rejected", "rules", f"doors open at {opens}")]


def test_rules_doors_open_admits_through_the_loop(tmp_path, mock_factory, tickets_csv):
    got = run(tmp_path, mock_factory, tickets_csv, ["CODE-0001"],
              gate_extra=f'doors_open = "{hhmm(-60)}"\ncheckout = "{hhmm(-120)}"')
    assert got == [("admitted", "ok", "")]


def test_rules_reentry_interval_through_the_loop(tmp_path, mock_factory, tickets_csv):
    # T1 came in 20 minutes ago and left 5 minutes ago (at another door); T2 left 40 minutes ago.
    got = run(tmp_path, mock_factory, tickets_csv, ["CODE-0001", "CODE-0002"], reentry=True,
              history=[("T1", "admitted", 20), ("T1", "exited", 5), ("T2", "admitted", 60), ("T2", "exited", 40)],
              gate_extra="reentry_after_min = 30")
    assert got[0][:2] == ("rejected", "rules") and got[0][2].startswith("re-entry 30 min after leaving: ")
    assert got[1] == ("admitted", "reentry", "")


def test_rules_entries_per_day_through_the_loop(tmp_path, mock_factory, tickets_csv):
    got = run(tmp_path, mock_factory, tickets_csv, ["CODE-0001", "CODE-0002"], reentry=True,
              history=[("T1", "admitted", 50), ("T1", "exited", 40), ("T1", "admitted", 30), ("T1", "exited", 20),
                       ("T2", "admitted", 30), ("T2", "exited", 20)],
              gate_extra=f'entries_per_day = 2\ncheckout = "{hhmm(-100)}"')
    assert got == [("rejected", "rules", "2 entries a day, used up"), ("admitted", "reentry", "")]


def test_rules_checkout_starts_the_day_at_zero_through_the_loop(tmp_path, mock_factory, tickets_csv):
    # T1 came in two hours ago and never scanned out; the check-out was an hour ago.
    history = [("T1", "admitted", 120)]
    got = run(tmp_path, mock_factory, tickets_csv, ["CODE-0001"], reentry=True, history=history,
              gate_extra=f'checkout = "{hhmm(-60)}"')
    assert got == [("admitted", "reentry", "")]
    (tmp_path / "no-checkout").mkdir()
    got = run(tmp_path / "no-checkout", mock_factory, tickets_csv, ["CODE-0001"], reentry=True, history=history)
    assert [g[1] for g in got] == ["already_used"]
