"""USB (keyboard-mode) and serial barcode scanners: keystrokes back to text, a
pseudo-terminal standing in for the serial port, the kernel's uinput for HID
where this machine offers it; then the same debounce -> decide path as a camera."""

import os
import time

import pytest

from gate.boxoffice.ticketfile import read_ticket_file
from gate.core.errors import CameraError
from gate.decide import GateRules, decide
from gate.decode import Debouncer
from gate.resolve import Resolver
from gate.sources.readers import Keystrokes, open_reader
from gate.state.tickets import TicketStore
from tests.conftest import wait_for

evdev = pytest.importorskip("evdev", reason="python-evdev is not installed (pip install 'gate[hid]')")
from evdev import ecodes as E

DOWN, UP = 1, 0


def press(*keys, shift=False, altgr=False):
    """Key events for one character as a scanner types it: modifiers down, key, modifiers up."""
    ev = []
    if shift:
        ev.append((E.KEY_LEFTSHIFT, DOWN))
    if altgr:
        ev.append((E.KEY_RIGHTALT, DOWN))
    for k in keys:
        ev += [(k, DOWN), (k, UP)]
    if altgr:
        ev.append((E.KEY_RIGHTALT, UP))
    if shift:
        ev.append((E.KEY_LEFTSHIFT, UP))
    return ev


def feed(ks, events, t0=100.0, step=0.002):
    out = []
    for i, (code, value) in enumerate(events):
        r = ks.feed(code, value, t0 + i * step)
        if r is not None:
            out.append(r)
    return out


def test_readers_us_layout_keystrokes_to_text():
    # "Ab-1@z/" then Enter, typed as a US-layout scanner does
    typed = (press(E.KEY_A, shift=True) + press(E.KEY_B) + press(E.KEY_MINUS) + press(E.KEY_1)
             + press(E.KEY_2, shift=True) + press(E.KEY_Z) + press(E.KEY_SLASH) + press(E.KEY_ENTER))
    assert feed(Keystrokes(E, "us"), typed) == ["Ab-1@z/"]


def test_readers_german_layout_keystrokes_to_text():
    # On a German layout the same text is other keys: Z/Y swapped, '-' is KEY_SLASH, '@' is AltGr+Q
    typed = (press(E.KEY_A, shift=True) + press(E.KEY_B) + press(E.KEY_SLASH) + press(E.KEY_1)
             + press(E.KEY_Q, altgr=True) + press(E.KEY_Y) + press(E.KEY_7, shift=True)
             + press(E.KEY_SEMICOLON) + press(E.KEY_ENTER))
    assert feed(Keystrokes(E, "de"), typed) == ["Ab-1@z/ö"]
    # what a German scanner types, read as US, is not the code: the layout setting matters
    assert feed(Keystrokes(E, "us"), typed) != ["Ab-1@z/ö"]


def test_readers_tab_terminator_and_keypad_enter():
    typed = press(E.KEY_C, E.KEY_O, E.KEY_D, E.KEY_E) + press(E.KEY_TAB) + press(E.KEY_X) + press(E.KEY_KPENTER)
    assert feed(Keystrokes(E, "us", "tab"), typed) == ["code"]   # the keypad Enter ends nothing here
    ks = Keystrokes(E, "us", "enter")
    assert feed(ks, typed) == ["codex"] and ks.dropped["unmapped"] == 1   # Tab is no character of a code


def test_readers_hostile_keystrokes_are_dropped_whole():
    ks = Keystrokes(E, "us", max_code=8)
    assert feed(ks, press(*[E.KEY_A] * 20) + press(E.KEY_ENTER)) == []
    assert ks.dropped["oversized"] == 1
    # a code interrupted for longer than a scanner ever pauses is not glued to the next one
    assert feed(ks, press(E.KEY_A, E.KEY_B), t0=200.0) == []
    assert feed(ks, press(E.KEY_C) + press(E.KEY_ENTER), t0=201.0) == ["c"]
    assert ks.dropped["interrupted"] == 1
    # auto-repeat and unmapped keys (F1, Alt) add nothing; an empty code is no code
    assert feed(ks, [(E.KEY_D, 2), (E.KEY_F1, DOWN), (E.KEY_LEFTALT, DOWN)] + press(E.KEY_ENTER), t0=300.0) == []


def test_readers_source_specs():
    assert open_reader("serial:/dev/ttyACM0@115200").baud == 115200
    assert open_reader("serial:/dev/ttyUSB1").baud == 9600
    assert open_reader("hid:/dev/input/event3").path == "/dev/input/event3"
    for bad in ("serial:/dev/x@fast", "serial:/dev/x@0", "serial:", "hid:", "usb:/dev/x", "serial:/dev/x@１２"):
        with pytest.raises(ValueError):
            open_reader(bad)
    with pytest.raises(CameraError, match="/nonexistent"):
        open_reader("serial:/nonexistent/ttyACM9").start()
    with pytest.raises(CameraError):
        open_reader("hid:/nonexistent/event9").start()


def test_readers_config_check_names_a_bad_source(tmp_path):
    from tests.conftest import run_gate_cli
    p = tmp_path / "g.toml"
    p.write_text('[gate]\nid = "a"\nvenue = "hall"\n[camera]\nsource = "serial:/dev/ttyACM0@lots"\n'
                 '[reader]\nlayout = "de"\n')
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2 and "g.toml:5: camera.source" in r.stderr
    p.write_text('[gate]\nid = "a"\nvenue = "hall"\n[reader]\nlayout = "fr"\n')
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2 and "reader.layout" in r.stderr


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def read_codes(src, n, timeout=5.0):
    out, end = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        c = src.read(0.1)
        if c is not None:
            out.append(c)
    return out


def test_readers_serial_scanner_through_a_pty_to_a_verdict(tmp_path, pty_port, tickets_csv):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'gate[serial]')")
    master, path = pty_port
    src = open_reader(f"serial:{path}@115200")
    src.start()
    store = TicketStore(tmp_path / "t.db")
    store.replace_all(read_ticket_file(tickets_csv))
    resolver, debounce = Resolver(store), Debouncer(2.0)
    rules = GateRules("door-a", frozenset({"eve"}))
    try:
        # a scanner sends CR LF after each code; the same ticket twice in a row is one presentation
        os.write(master, b"CODE-0001\r\nCODE-0001\r\n" + b"X" * 5000 + b"\r\nCODE-0004\r\n\xff\xfe\r\n")
        codes = read_codes(src, 4)
        assert [c.raw for c in codes] == [b"CODE-0001", b"CODE-0001", b"CODE-0004", b"\xff\xfe"]
        assert src.dropped["oversized"] == 1
        now = int(time.time() * 1000)
        verdicts = [decide(resolver.resolve(c), store.history("x"), rules, now).reason
                    for c in codes if debounce.is_new(c.raw)]
        assert verdicts == ["ok", "revoked", "unknown"]
    finally:
        src.close()
        store.close()


def test_readers_usb_scanner_through_uinput_to_a_verdict(tmp_path, tickets_csv):
    if not os.path.exists("/dev/uinput"):
        pytest.skip("the kernel offers no /dev/uinput on this machine (no uinput module, or a container "
                    "without the device): a virtual USB keyboard cannot be made here")
    from evdev import UInput
    try:
        ui = UInput({E.EV_KEY: list(range(1, 120))}, name="gate-test-scanner")
    except (OSError, evdev.UInputError) as exc:
        pytest.skip(f"uinput refused a virtual keyboard here: {exc}")
    store = TicketStore(tmp_path / "t.db")
    store.replace_all(read_ticket_file(tickets_csv))
    try:
        wait_for(lambda: os.access(ui.device.path, os.R_OK), 5, what="the event node (udev makes it)")
        src = open_reader("hid:" + ui.device.path)
        src.start()
        for code, value in (press(E.KEY_C, E.KEY_O, E.KEY_D, E.KEY_E, shift=True) + press(E.KEY_MINUS)
                            + press(E.KEY_0, E.KEY_0, E.KEY_0, E.KEY_1) + press(E.KEY_ENTER)):
            ui.write(E.EV_KEY, code, value)
            ui.syn()
        [c] = read_codes(src, 1)
        assert c.text == "CODE-0001"
        v = decide(Resolver(store).resolve(c), store.history("T1"), GateRules("door-a", frozenset({"eve"})),
                   int(time.time() * 1000))
        assert (v.result, v.reason, v.ticket_ref) == ("admitted", "ok", "T1")
        src.close()
    finally:
        ui.close()
        store.close()
