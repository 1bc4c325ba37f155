"""Feedback on gpiozero's MockFactory: the pins' recorded histories."""

import time

import pytest
from gpiozero.pins.mock import MockPWMPin

from gate.core.events import REASONS
from gate.feedback import PATTERNS, Feedback
from tests.conftest import gate_config, wait_for

R, G, B, BUZ, RELAY = 17, 27, 22, 23, 24
LATE = 0.3   # how much later than its time a loaded machine may make a change (a wait never ends early)


def build(tmp_path, mock_factory, **kw):
    cfg = gate_config(tmp_path, **kw)
    return Feedback.from_config(cfg.feedback, pin_factory=mock_factory)


def assert_pattern(pin, expected):
    """The pin went through exactly `expected`: (seconds since the previous change, state) pairs, each
    change no earlier than its time and at most LATE after it."""
    got = [(round(st.timestamp, 3), st.state) for st in pin.states]
    assert [bool(s) for _, s in got] == [s for _, s in expected], got
    for (t, _), (want, _) in zip(got, expected):
        assert want - 0.01 <= t <= want + LATE, got


def test_feedback_every_reason_has_a_distinct_pattern():
    assert set(PATTERNS) == set(REASONS)
    assert len({PATTERNS[r] for r in REASONS}) == len(REASONS)


def test_feedback_ok_pin_history(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    green, buzzer = mock_factory.pin(G), mock_factory.pin(BUZ)
    green.clear_states()
    buzzer.clear_states()
    fb.show("ok")
    wait_for(lambda: len(green.states) == 3 and len(buzzer.states) == 3, 1 + 2 * LATE, what="the ok pattern played")
    assert_pattern(green, [(0.0, False), (0.0, True), (1.0, False)])
    assert_pattern(buzzer, [(0.0, False), (0.0, True), (0.08, False)])
    mock_factory.pin(R).assert_states([False])  # red never lit
    fb.close()


def test_feedback_already_used_pin_history(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    red, buzzer = mock_factory.pin(R), mock_factory.pin(BUZ)
    red.clear_states()
    buzzer.clear_states()
    fb.show("already_used")
    wait_for(lambda: len(red.states) == 3 and len(buzzer.states) == 3, 2 + 2 * LATE, what="the pattern played")
    assert_pattern(red, [(0.0, False), (0.0, True), (2.0, False)])
    assert_pattern(buzzer, [(0.0, False), (0.0, True), (0.6, False)])
    fb.close()


@pytest.mark.parametrize("reason", REASONS)
def test_feedback_first_step_per_reason(tmp_path, mock_factory, reason):
    fb = build(tmp_path, mock_factory)
    first = PATTERNS[reason][0]
    want = (tuple(bool(c) for c in first.colour), bool(first.tone))
    fb.show(reason)
    # Polled finely: the shortest first step lasts 80 ms.
    wait_for(lambda: (tuple(bool(mock_factory.pin(p).state) for p in (R, G, B)), bool(mock_factory.pin(BUZ).state))
             == want, 2, 0.002, what=f"the first step of {reason}: {want}")
    fb.close()


def test_feedback_show_never_blocks(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    t0 = time.perf_counter()
    for r in REASONS * 20:
        fb.show(r)
    assert time.perf_counter() - t0 < 0.5   # waiting for even one pattern would take a second or more
    fb.close()


def test_feedback_newer_verdict_cuts_the_pattern_short(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    fb.show("already_used")
    wait_for(lambda: mock_factory.pin(R).state, 2, what="red for already used")
    fb.show("ok")
    # Not cut, the red would last its 2 s and green come only then.
    wait_for(lambda: mock_factory.pin(G).state and not mock_factory.pin(R).state, 1.0, 0.005,
             what="green at once, the red cut short")
    fb.close()


def test_feedback_relay_off_at_start_and_on_close(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    relay = mock_factory.pin(RELAY)
    assert relay.state == 0
    fb.relay.on()
    fb.close()
    assert relay.state == 0
    fb.close()  # idempotent


def test_feedback_relay_off_when_an_exception_escapes(tmp_path, mock_factory):
    with pytest.raises(RuntimeError):
        with build(tmp_path, mock_factory) as fb:
            fb.relay.on()
            raise RuntimeError("crash in the loop")
    assert mock_factory.pin(RELAY).state == 0


def test_feedback_tonal_buzzer_plays_tones(tmp_path, mock_factory):
    cfg = gate_config(tmp_path)
    cfg.feedback.tonal_buzzer = True
    fb = Feedback.from_config(cfg.feedback, pin_factory=mock_factory)
    pin = mock_factory.pin(BUZ)
    assert isinstance(pin, MockPWMPin)
    fb.show("ok")
    wait_for(lambda: pin.frequency, 2, 0.002, what="a tone (it lasts 80 ms)")
    assert abs(pin.frequency - 1046.5) < 1  # C6
    wait_for(lambda: pin.frequency is None, 2, what="the tone ended")
    fb.close()


def test_feedback_fault_blink_while_idle(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    red = mock_factory.pin(R)
    fb.set_fault("camera")
    wait_for(lambda: red.state == 1, 3, 0.005, what="the red fault blink")
    fb.set_fault(None)
    wait_for(lambda: red.state == 0, 2, what="the blink ended")
    assert red.states[-1].timestamp < 0.5   # cut short: its red step lasts 0.5 s
    fb.close()


def test_feedback_failed_build_closes_what_it_opened(tmp_path, mock_factory):
    """The relay on the LED's red pin: the build fails, and the relay it already made is released."""
    import gc
    import sys

    import gpiozero
    cfg = gate_config(tmp_path)
    cfg.feedback.relay = R
    errors = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: errors.append(u.exc_value)
    try:
        with pytest.raises(gpiozero.GPIOPinInUse):
            Feedback.from_config(cfg.feedback, pin_factory=mock_factory)
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert errors == []                                   # no AttributeError from __del__
    Feedback.from_config(gate_config(tmp_path).feedback, pin_factory=mock_factory).close()  # pins were freed


def test_feedback_relay_belongs_to_feedback_and_release_goes_inert(tmp_path, mock_factory):
    fb = build(tmp_path, mock_factory)
    release, relay = fb.release, mock_factory.pin(RELAY)
    release.hold()
    assert relay.state == 1
    fb.close()
    assert relay.state == 0
    release.hold()                                        # a late turnstile timer cannot reopen it
    release.pulse(0.2)
    assert relay.state == 0


def test_feedback_close_right_after_a_verdict_stops_the_pattern(tmp_path, mock_factory, caplog):
    """close() just after show() (SIGTERM after a scan) used to miss the stop: the worker cleared the
    stop's nudge as it took the new pattern and played it whole, the 1 s join gave up, and the
    pins were closed under it (a traceback in the log)."""
    import logging
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        fb = build(tmp_path, mock_factory)
        fb.show("ok")
        fb.close()
    assert not [r.getMessage() for r in caplog.records], caplog.text
    assert mock_factory.pin(G).state == 0 and mock_factory.pin(RELAY).state == 0
