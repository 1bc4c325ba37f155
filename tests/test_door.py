"""Turnstile and handheld units on gpiozero's MockFactory: sensor and trigger
pins driven, relay/LED/buzzer histories asserted, including timing."""

import io
import threading
import time

import numpy as np

from gate.boxoffice.ticketfile import read_ticket_file
from gate.camera import MemorySource
from gate.door.display import ConsoleDisplay
from gate.feedback import Feedback
from gate.scanner import Scanner
from gate.sim.render import compose
from gate.state.tickets import TicketStore
from tests.conftest import gate_config, wait_for

R, G, B, BUZ, RELAY, PASSAGE, EXIT, FREE, TRIGGER = 17, 27, 22, 23, 24, 5, 6, 13, 16
RNG = np.random.default_rng(21)
EMPTY = compose(None, "empty", rng=np.random.default_rng(2))


class Verdicts(list):
    """(verdict, event) pairs as the loop gave them; `at` holds when each came (monotonic)."""

    def __init__(self):
        super().__init__()
        self.at = []

    def add(self, v, w, e):
        self.at.append(time.monotonic())
        self.append((v, e))


def start(tmp_path, mock_factory, tickets_csv, frames, fps=30, display=None, **kw):
    cfg = gate_config(tmp_path, **kw)
    st = TicketStore(cfg.storage.dir + "/tickets.db")
    st.replace_all(read_ticket_file(tickets_csv))
    st.close()
    verdicts = Verdicts()
    fb = Feedback.from_config(cfg.feedback, pin_factory=mock_factory, display=display)
    s = Scanner(cfg, MemorySource(frames, fps), feedback=fb, pin_factory=mock_factory, connect=False,
                on_verdict=verdicts.add)
    th = threading.Thread(target=s.run)
    th.start()
    return s, th, verdicts


def show(code, n=3):
    return [compose(code, "clean", rng=RNG)] * n


def test_turnstile_pulse_is_200ms(tmp_path, mock_factory, tickets_csv):
    s, th, v = start(tmp_path, mock_factory, tickets_csv, [EMPTY] * 3 + show("CODE-0001") + [EMPTY] * 20)
    th.join(15)
    relay = mock_factory.pin(RELAY)
    assert [st.state for st in relay.states] == [False, True, False]
    assert 0.19 < relay.states[2].timestamp < 0.5, relay.states   # never shorter; a loaded machine ends it late


def test_turnstile_passage_confirms_and_timeout_annuls(tmp_path, mock_factory, tickets_csv):
    passage = "passage_pin = 5\nassist_timeout_s = 0.6"   # T2 is a wheelchair user: a longer time to pass
    frames = [EMPTY] * 3 + show("CODE-0001") + [EMPTY] * 30 + show("CODE-0002") + [EMPTY] * 10
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames, passage=passage, passage_timeout=0.6)
    wait_for(lambda: len(v) == 1 and s.turnstile.pending, what="first admission, turnstile released")
    pin = mock_factory.pin(PASSAGE)
    pin.drive_high()                            # Ada walks through
    pin.drive_low()
    th.join(15)
    got = [(x.result, x.reason, e.ticket) for x, e in v]
    assert got == [("admitted", "ok", "T1"), ("admitted", "ok", "T2"), ("annulled", "not_passed", "T2")]
    annul_e, adm_e = v[2][1], v[1][1]
    assert annul_e.ts == adm_e.ts and annul_e.seq > adm_e.seq
    assert s.store is not None
    # T2 stays usable, T1 is inside
    st = TicketStore(s.cfg.storage.dir + "/tickets.db")
    assert st.history("T1").inside and st.history("T2").first_ts is None
    st.close()


def test_turnstile_annul_timing(tmp_path, mock_factory, tickets_csv):
    frames = [EMPTY] * 3 + show("CODE-0001") + [EMPTY] * 5
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames, passage="passage_pin = 5", passage_timeout=1.0)
    wait_for(lambda: len(v) == 2, 5, what="admission and annulment")
    th.join(10)
    assert [x.result for x, _ in v] == ["admitted", "annulled"]
    # Timed from the verdicts themselves: never before the timeout; a loaded machine may be late.
    assert 0.95 < v.at[1] - v.at[0] < 1.5, v.at


def test_turnstile_hold_until_passage_or_timeout(tmp_path, mock_factory, tickets_csv):
    frames = [EMPTY] * 3 + show("CODE-0001") + [EMPTY] * 60
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames, passage="passage_pin = 5",
                     passage_timeout=3.0, relay_mode="hold")
    relay = mock_factory.pin(RELAY)
    wait_for(lambda: relay.state == 1, what="relay held")
    time.sleep(0.5)                             # time itself: longer than the 0.2 s a pulse would last
    assert relay.state == 1                     # still held: nobody passed yet
    mock_factory.pin(PASSAGE).drive_high()
    assert relay.state == 0                     # released the moment someone passed
    mock_factory.pin(PASSAGE).drive_low()
    th.join(15)
    assert [x.result for x, _ in v] == ["admitted"]
    assert relay.states[-1].timestamp >= 0.5    # held from the admission until the passage


def test_turnstile_free_passage_holds_open_and_is_reported(tmp_path, mock_factory, tickets_csv):
    frames = [EMPTY] * 60
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames, fps=30, passage="free_passage_pin = 13")
    relay = mock_factory.pin(RELAY)
    mock_factory.pin(FREE).drive_high()         # fire alarm
    assert relay.state == 1
    wait_for(lambda: s.health()["free_passage"] is True, what="reported in health")
    mock_factory.pin(FREE).drive_low()
    assert relay.state == 0
    th.join(10)
    assert relay.state == 0


def test_turnstile_exit_sensor_counts_an_exit(tmp_path, mock_factory, tickets_csv):
    s, th, v = start(tmp_path, mock_factory, tickets_csv, [EMPTY] * 40, passage="exit_passage_pin = 6")
    wait_for(lambda: s.processed, what="the loop running")
    mock_factory.pin(EXIT).drive_high()
    mock_factory.pin(EXIT).drive_low()
    th.join(10)
    assert [(x.result, x.reason, e.dir, e.ticket) for x, e in v] == [("exited", "exit", "out", "")]


def test_turnstile_relay_never_moves_for_rejections(tmp_path, mock_factory, tickets_csv):
    frames = [EMPTY] * 3 + show("CODE-0003") + [EMPTY] * 3 + show("CODE-0004") + [EMPTY] * 3 + show("XX") + [EMPTY] * 5
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames)
    th.join(10)
    assert len(v) == 3 and [st.state for st in mock_factory.pin(RELAY).states] == [False]


def test_handheld_scans_only_while_trigger_held_one_verdict_per_press(tmp_path, mock_factory, tickets_csv):
    out = io.StringIO()
    display = ConsoleDisplay(out)
    trig = mock_factory.pin(TRIGGER)
    trig.drive_high()                                   # released (pull-up)
    code = compose("CODE-0001", "clean", rng=RNG)
    code2 = compose("CODE-0002", "clean", rng=RNG)
    press = threading.Event()

    def frames():
        for _ in range(15):
            yield code                                   # held up, but the trigger is not pressed
        press.set()
        for _ in range(20):
            yield code                                   # pressed: one verdict only
        for _ in range(20):
            yield code2                                  # same press, another ticket: ignored
        yield "release"
        for _ in range(15):
            yield EMPTY
        yield "press"
        for _ in range(10):
            yield code2

    def gen():
        for f in frames():
            if isinstance(f, str):
                (trig.drive_high if f == "release" else trig.drive_low)()
                continue
            if press.is_set() and not getattr(gen, "pressed", False):
                trig.drive_low()
                gen.pressed = True
            yield f
    s, th, v = start(tmp_path, mock_factory, tickets_csv, gen(), profile="handheld", display=display)
    th.join(20)
    assert [(x.reason, e.ticket) for x, e in v] == [("ok", "T1"), ("ok", "T2")]
    display.wait_idle()
    assert display.history[0] == ("WELCOME ok", "Ada Lovelace", "Seat B12", "Welcome back, Ada!")
    assert "Alan Turing" in out.getvalue()


def test_display_content_per_verdict(tmp_path, mock_factory, tickets_csv):
    display = ConsoleDisplay(io.StringIO())
    frames = [EMPTY] * 3 + show("CODE-0004") + [EMPTY] * 3 + show("CODE-0002") + [EMPTY] * 5
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames, display=display)
    th.join(10)
    assert display.wait_idle(5)
    assert display.history[0] == ("STOP revoked", "Revoked Person", "Seat D2", "cancelled by the box office")
    assert display.history[1] == ("WELCOME ok", "Alan Turing", "Seat C3", "Wheelchair space C3",
                                  "ACCESSIBLE: longer release")   # the usher sees the longer release


def test_hospitality_attention_pattern_follows_admission(tmp_path, mock_factory, tickets_csv):
    frames = [EMPTY] * 3 + show("CODE-0002") + [EMPTY] * 80
    s, th, v = start(tmp_path, mock_factory, tickets_csv, frames)
    th.join(15)
    white = [mock_factory.pin(p).states for p in (R, G, B)]
    # assist = white/blue alternation after the green ok pattern: red lit only in the white steps
    assert any(st.state for st in white[0])
    assert v[0][1].attention == ["wheelchair"]


def test_fault_no_ticket_data_shown(tmp_path, mock_factory):
    cfg = gate_config(tmp_path)
    s = Scanner(cfg, MemorySource([EMPTY] * 60, 30), pin_factory=mock_factory, connect=False)
    th = threading.Thread(target=s.run)
    th.start()
    wait_for(lambda: getattr(s, "fault", None) == "tickets", what="no-data fault")
    wait_for(lambda: mock_factory.pin(R).state == 1 and mock_factory.pin(G).state == 1, what="yellow blink")
    th.join(10)


def test_handheld_camera_rate_idle_full_idle_only_on_changes(tmp_path, mock_factory, tickets_csv):
    trig = mock_factory.pin(TRIGGER)
    trig.drive_high()

    class RateSource(MemorySource):
        rates = []

        def set_rate(self, fps):
            self.rates.append(fps)

    def frames():
        for i in range(60):
            if i == 15:
                trig.drive_low()       # pressed
            if i == 30:
                trig.drive_high()      # released; linger 0.3 s, then idle
            yield EMPTY
    cfg = gate_config(tmp_path, profile="handheld")
    s = Scanner(cfg, RateSource(frames(), 30), pin_factory=mock_factory, connect=False)
    s.run()
    assert RateSource.rates[0] == cfg.camera.idle_fps
    assert cfg.camera.fps in RateSource.rates and RateSource.rates[-1] == cfg.camera.idle_fps
    assert all(a != b for a, b in zip(RateSource.rates, RateSource.rates[1:]))  # no repeated writes
