"""Every `gate` command ends in 0, 1 or 2 through one map, and no traceback reaches the operator."""

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np
from PIL import Image

from gate.bus.broker import free_port
from gate.cli.main import build_parser
from gate.config import load
from gate.house.build import build_house
from gate.sim.render import compose
from tests.conftest import REPO, TICKETS_CSV, boxoffice_config, run_gate_cli

# Runs one command's handler as `gate` would and writes down what the handler itself returned.
HANDLER = ("import json, sys\n"
           "from gate.cli.main import build_parser\n"
           "args = build_parser().parse_args(sys.argv[2:])\n"
           "rc = args.func(args)\n"
           "open(sys.argv[1], 'w').write(json.dumps([type(rc).__name__, rc]))\n")


def leaf_commands(parser, prefix="") -> set[str]:
    """Every runnable `gate` command ("scan", "tickets import", ...) the parser has registered."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                found |= leaf_commands(p, f"{prefix}{name} ") or {f"{prefix}{name}"}
    return found


def _gate_toml(tmp_path, name="g", mqtt="[mqtt]\nenabled=false\n"):
    p = tmp_path / f"{name}.toml"
    p.write_text(f'[gate]\nid="door-a"\nvenue="hall"\nevents=["eve"]\n[storage]\ndir="{tmp_path}/{name}-state"\n{mqtt}')
    return p


def _house_toml(tmp_path, listen=None):
    p = tmp_path / "house.toml"
    p.write_text(f'[house]\nvenue="hall"\nlisten="{listen or f"127.0.0.1:{free_port()}"}"\n'
                 f'[mqtt]\nhost="127.0.0.1"\nport={free_port()}\n[storage]\ndir="{tmp_path}/house-state"\n')
    return p


def test_cli_exits_every_command_handler_returns_an_int(tmp_path, broker):
    from gate.boxoffice.keys import new_keypair
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(7)
    for i in range(3):
        Image.fromarray(compose(None, "empty", rng=rng)).save(frames / f"{i:03d}.png")
    image = tmp_path / "code.png"
    Image.fromarray(compose("HELLO", "clean", rng=rng)).save(image)
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    key, pub = new_keypair(tmp_path / "keys", "staff")
    gate = _gate_toml(tmp_path)
    box = boxoffice_config(tmp_path, broker.port)
    house = _house_toml(tmp_path)
    # `gate venue` succeeds only when the house confirms: a house on the broker that holds the staff key
    running = tmp_path / "running-house.toml"
    running.write_text(f'[house]\nvenue="hall"\nlisten="127.0.0.1:{free_port()}"\n[mqtt]\nhost="127.0.0.1"\n'
                       f'port={broker.port}\n[storage]\ndir="{tmp_path}/running-house"\n'
                       f'[signing]\nstaff_keys=["{pub}"]\n')
    house_parts = build_house(load(running))
    house_parts.start()
    assert house_parts.bus.connected.wait(10)
    from gate.boxoffice.keys import new_secret
    list_key, _ = new_keypair(tmp_path / "keys", "boxoffice")
    # the box office publishes lists (and, with them, revoked staff cards) and switches the venue
    box = boxoffice_config(tmp_path, broker.port, signing=f'[signing]\nlist_signing_key="{list_key}"\n'
                           f'venue_secret="{new_secret(tmp_path / "keys", "venue")}"\n')
    # `gate broker revoke` succeeds only when the broker then refuses the party: a real Mosquitto on the
    # configuration `gate broker config` writes, from which door-z is revoked
    from gate.bus.brokerconf import write_config
    from tests.venue_broker import VenueBroker
    revoke_conf, revoke_port = tmp_path / "revoke-conf", free_port()
    write_config(revoke_conf, "hall", ["door-z"], [], ["localhost"], revoke_port, "127.0.0.1")
    revoke_broker = VenueBroker(tmp_path / "revoke-broker", revoke_conf)
    revoke_broker.port = revoke_port
    revoke_broker.start()
    runs = {
        "scan": ["-c", gate, "--source", f"replay:{frames}@30", "--offline"],
        "decode": [image],
        "doctor": ["-c", gate, "--clear-latch"],
        "config check": [REPO / "config/turnstile.toml"],
        "house": ["-c", house, "export", "--out", tmp_path / "attendance.csv"],
        "demo": ["--duration", "1", "--listen", f"127.0.0.1:{free_port()}"],
        "tickets import": ["-c", gate, tickets],
        "tickets issue": ["--key", key, "--event", "eve", "--count", "2", "--no-png", "--out", tmp_path / "issued"],
        "staff issue": ["--key", key, "--name", "Ada", "--action", "entry", "--venue", "hall", "--out",
                        tmp_path / "cards"],
        "staff revoke": ["-c", box, "00000000000000aa", "--allow-empty"],
        "venue": ["test", "-c", box, "--key", key],
        "keys new": ["--out", tmp_path / "more-keys"],
        "broker config": ["--out", tmp_path / "broker-conf", "--venue", "hall"],
        "broker revoke": ["door-z", "--out", revoke_conf, "--pid", revoke_broker.proc.pid],
    }
    # a command added without a representative run here fails this test
    assert leaf_commands(build_parser()) == set(runs)
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    try:
        for command, rest in runs.items():
            out = tmp_path / "rc.json"
            out.unlink(missing_ok=True)
            p = subprocess.run([sys.executable, "-c", HANDLER, str(out), *command.split(), *map(str, rest)],
                               capture_output=True, text=True, env=env, timeout=90)
            assert p.returncode == 0 and out.exists(), f"{command}: {p.stderr[-2000:]}"
            assert json.loads(out.read_text()) == ["int", 0], command
    finally:
        house_parts.close()
        revoke_broker.stop()


def test_cli_exits_bad_input_is_2_runtime_failure_is_1_and_never_a_traceback(tmp_path):
    gate, house = _gate_toml(tmp_path), _house_toml(tmp_path)
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello\n")
    binary = tmp_path / "revoked.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(TICKETS_CSV)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    busy = _house_toml(tmp_path, listen=f"127.0.0.1:{listening.getsockname()[1]}")
    cases = [   # (arguments, exit code, what stderr says)
        (["frobnicate"], 2, "invalid choice"),
        (["scan"], 2, "the following arguments are required: -c/--config"),
        (["config", "check", tmp_path / "missing.toml"], 2, "missing.toml"),
        (["scan", "-c", gate, "--source", "serial:/dev/ttyACM0@fast"], 2, "gate: --source:"),
        (["scan", "-c", gate, "--source", "nonsense:/dev/x"], 1, "gate: camera: unknown camera source"),
        (["scan", "-c", house], 2, "gate scan needs a [gate] section"),
        (["house", "-c", gate, "export"], 2, "gate house needs a [house] section"),
        (["doctor", "-c", house, "--clear-latch"], 2, "gate: doctor --clear-latch needs a gate's config"),
        (["tickets", "import", "-c", gate, tmp_path / "nope.csv"], 2, "nope.csv"),
        (["tickets", "import", "-c", gate, tickets, "--revoke", binary], 2, "not a text file of ticket ids"),
        (["tickets", "issue", "--key", not_a_key, "--event", "e", "--count", "1", "--out", tmp_path / "i"], 2,
         "gate: tickets issue:"),
        (["tickets", "issue", "--key", tmp_path / "no.key", "--event", "e", "--count", "1", "--out", tmp_path / "i"], 2,
         "no.key"),
        (["staff", "issue", "--key", not_a_key, "--name", "Ada", "--venue", "hall", "--out", tmp_path / "c"], 2,
         "gate: staff issue:"),
        (["staff", "revoke", "-c", house, "00000000000000aa"], 2, "gate: staff revoke: " + f"{house} is the house's"),
        (["staff", "revoke", "-c", boxoffice_config(tmp_path, free_port(), name="nokeys"), "not-a-card-id"], 2,
         "gate: staff revoke: not a card id"),
        (["staff", "revoke", "-c", tmp_path / "nokeys.toml", "00000000000000aa"], 2, "signing.list_signing_key"),
        (["venue", "live", "-c", gate, "--key", not_a_key], 2, "gate: venue:"),
        (["keys", "new", "--out", tmp_path / "k", "--name", "../x"], 2, "letters, digits"),
        (["broker", "config", "--out", tmp_path / "b"], 2, "needs --venue or -c HOUSE_CONFIG"),
        (["keys", "new", "--out", tmp_path / "k"], 0, ""),
        (["keys", "new", "--out", tmp_path / "k"], 1, "refusing to overwrite a signing key"),
        (["venue", "live", "-c", gate, "--key", tmp_path / "k" / "tickets.key"], 2, "is a gate's config"),
        (["venue", "live", "-c", boxoffice_config(tmp_path, free_port(), name="nobroker"),
          "--key", tmp_path / "k" / "tickets.key"], 1, "gate: venue: live not sent: nothing accepts connections"),
        (["house", "-c", busy], 1, "gate: house.listen: cannot listen on"),
    ]
    try:
        for args, code, said in cases:
            r = run_gate_cli(*map(str, args))
            assert r.returncode == code and said in r.stderr, (args, r.returncode, r.stderr)
            assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (args, r.stderr)
    finally:
        listening.close()


# A command with a bug in it: the decode handler replaced by one that fails in a way no map knows.
BROKEN = ("import sys\n"
          "from gate.cli import gatecmds\n"
          "from gate.cli.main import main\n"
          "def decode(args):\n"
          "    raise ZeroDivisionError('a bug\\nsecond line')\n"
          "gatecmds.decode = decode\n"
          "sys.exit(main())\n")


def _broken(tmp_path, *args, env=None, **kw):
    e = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    e.pop("GATE_DEBUG", None)
    e.pop("JOURNAL_STREAM", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", BROKEN, *args], text=True, env=e, timeout=60, **kw)


def test_cli_exits_internal_error_is_one_line_and_the_traceback_goes_to_the_log(tmp_path):
    log = tmp_path / "state" / "gate" / "gate.log"
    r = _broken(tmp_path, "decode", "x.png", capture_output=True)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [f"gate: internal error: ZeroDivisionError: a bug (traceback in {log}; "
                                     "GATE_DEBUG=1 prints it here)"]
    text = log.read_text()
    assert "internal error in `gate decode x.png`" in text and "Traceback" in text and "ZeroDivisionError" in text
    # bounded: a crash loop keeps the newest megabyte and the one before
    log.write_text("x" * (1 << 20 | 1))
    assert _broken(tmp_path, "decode", "y.png", capture_output=True).returncode == 1
    assert log.with_name("gate.log.1").stat().st_size == 1 << 20 | 1 and "y.png" in log.read_text()


def test_cli_exits_internal_error_traceback_on_stderr_only_when_asked(tmp_path):
    for args, env in ((["--debug", "decode", "x.png"], {}), (["decode", "x.png"], {"GATE_DEBUG": "1"})):
        r = _broken(tmp_path, *args, env=env, capture_output=True)
        assert r.returncode == 1 and "Traceback" in r.stderr and "ZeroDivisionError: a bug" in r.stderr
        assert r.stderr.splitlines()[-1] == "gate: internal error: ZeroDivisionError: a bug"
    assert not (tmp_path / "state").exists()
    r = _broken(tmp_path, "decode", "x.png", env={"GATE_DEBUG": "0"}, capture_output=True)
    assert "Traceback" not in r.stderr


def test_cli_exits_internal_error_under_systemd_goes_to_the_journal(tmp_path):
    """Under systemd stderr is the journal (JOURNAL_STREAM names it): the traceback goes there, with the pid to find it."""
    journal = tmp_path / "journal"
    with open(journal, "w") as stream:
        st = os.fstat(stream.fileno())
        r = _broken(tmp_path, "decode", "x.png", env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
                    stdout=subprocess.PIPE, stderr=stream)
    text = journal.read_text()
    assert r.returncode == 1 and "Traceback" in text and "internal error in `gate decode x.png`" in text
    assert text.splitlines()[-1].startswith("gate: internal error: ZeroDivisionError: a bug (traceback in the "
                                            "journal: journalctl _PID=")
    assert not (tmp_path / "state").exists()
