import json
import re

import numpy as np
from PIL import Image

from gate.sim.render import compose
from tests.conftest import REPO, run_gate_cli


def test_cli_decode_prints_one_line_per_code_or_dash(tmp_path):
    rng = np.random.default_rng(0)
    a, b, c = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"
    Image.fromarray(compose("HELLO-Ä", "clean", rng=rng)).save(a)
    Image.fromarray(compose("CODE128-42", "clean", symbology="code128", rng=rng)).save(b, quality=90)
    Image.fromarray(compose(None, "empty", rng=rng)).save(c)
    r = run_gate_cli("decode", str(a), str(b), str(c))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("\t")[:2] == [str(a), "qr"] and json.loads(lines[0].split("\t")[2]) == "HELLO-Ä"
    assert lines[1].split("\t")[1] == "code128" and json.loads(lines[1].split("\t")[2]) == "CODE128-42"
    assert lines[2] == f"{c}\t-"


def test_cli_decode_big_photo_and_bad_file(tmp_path):
    big = np.full((3000, 4000), 180, np.uint8)
    sym = compose("BIG-PHOTO", "clean", size=(640, 480), rng=np.random.default_rng(1))
    big[1000:1000 + 480 * 2, 1500:1500 + 640 * 2] = np.kron(sym, np.ones((2, 2), np.uint8))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=85)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = run_gate_cli("decode", str(tmp_path / "big.jpg"), str(tmp_path / "bad.png"))
    assert r.returncode == 2
    assert '"BIG-PHOTO"' in r.stdout and "bad.png: cannot read image" in r.stderr


def test_cli_config_check_exit_codes(tmp_path):
    assert run_gate_cli("config", "check", str(REPO / "config/turnstile.toml")).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[gate]\nid = "a"\nvenue = "v"\n\n[camera]\nfsp = 30\n')
    r = run_gate_cli("config", "check", str(bad))
    assert r.returncode == 2 and f"{bad}:6: camera.fsp: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_tickets_import_bad_file_exit_2_and_names_row(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\n[storage]\ndir="{tmp_path}/s"\n')
    t = tmp_path / "t.csv"
    t.write_text("ticket_id,code,event,status\nT1,C1,eve,valid\nT2,C2,eve,maybe\n")
    r = run_gate_cli("tickets", "import", "-c", str(cfg), str(t))
    assert r.returncode == 2 and "row 3, column 'status'" in r.stderr
    t.write_text("ticket_id,code,event\n" + "".join(f"T{i},C{i},eve\n" for i in range(30000)))
    r = run_gate_cli("tickets", "import", "-c", str(cfg), str(t))
    assert r.returncode == 0 and "imported 30,000 tickets" in r.stdout
    assert "(33%)" in r.stderr or "(66%)" in r.stderr  # progress shown


def test_cli_scan_without_camera_is_one_line(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\n[storage]\ndir="{tmp_path}/s"\n[mqtt]\nenabled=false\n')
    r = run_gate_cli("scan", "-c", str(cfg), "--source", "picamera2")
    assert r.returncode == 1 and "python3-picamera2" in r.stderr and "Traceback" not in r.stderr


def test_cli_scan_json_prints_scan_events(tmp_path, tickets_csv):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(3)
    seq = [None] * 3 + ["CODE-0001"] * 3 + [None] * 3 + ["GARBAGE"] * 3 + [None] * 3
    for i, c in enumerate(seq):
        Image.fromarray(compose(c, "clean" if c else "empty", rng=rng)).save(frames / f"{i:03d}.png")
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="door-j"\nvenue="hall"\nevents=["eve"]\n[storage]\ndir="{tmp_path}/s"\n')
    assert run_gate_cli("tickets", "import", "-c", str(cfg), str(tickets_csv)).returncode == 0
    r = run_gate_cli("scan", "-c", str(cfg), "--source", f"replay:{frames}@30", "--json", "--offline")
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in r.stdout.splitlines()]
    assert [(e["result"], e["reason"], e["ticket"], e["seq"]) for e in events][0] == ("admitted", "ok", "T1", 1)
    assert events[1]["reason"] == "unknown" and events[1]["ticket"].startswith("h:")
    assert set(events[0]) == {"v", "id", "gate", "seq", "ts", "event", "ticket", "dir", "result", "reason", "attention",
                              "mode", "instance"}   # instance: which device of this gate id (gate/state/instance.py)
    assert re.fullmatch(r"[0-9a-f]{12}", events[0]["instance"]) and events[1]["instance"] == events[0]["instance"]
    # the operator's one line on where the start-up went (gate/core/startup.py), the process's start included
    ready = re.findall(r"ready: first frame decided ([0-9.]+) s after start \(interpreter ([0-9.]+) s, "
                       r"imports ([0-9.]+) s, config and build ([0-9.]+) s, first frame ([0-9.]+) s\)", r.stderr)
    assert len(ready) == 1, r.stderr
    total, *phases = map(float, ready[0])
    assert 0 < total < 60 and abs(total - sum(phases)) <= 0.3, ready   # five figures, each rounded to 0.1 s


def test_cli_tickets_import_header_only_is_refused_unless_asked(tmp_path):
    """A header-only export used to import 0 tickets with rc 0 and wipe the gate's list."""
    from gate.state.tickets import TicketStore
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\n[storage]\ndir="{tmp_path}/s"\n')
    t = tmp_path / "t.csv"
    t.write_text("ticket_id,code,event\nT1,C1,eve\nT2,C2,eve\n")
    assert run_gate_cli("tickets", "import", "-c", str(cfg), str(t)).returncode == 0
    t.write_text("ticket_id,code,event\n")
    r = run_gate_cli("tickets", "import", "-c", str(cfg), str(t))
    assert r.returncode == 2 and "no tickets" in r.stderr and "--allow-empty" in r.stderr, r.stderr
    store = TicketStore(tmp_path / "s" / "tickets.db")
    assert store.count() == 2
    store.close()
    r = run_gate_cli("tickets", "import", "-c", str(cfg), str(t), "--allow-empty")
    assert r.returncode == 0 and "imported 0 tickets" in r.stdout


def test_each_command_is_found_in_its_role_and_gate_scan_loads_only_the_gates():
    """gate/cli/main.py looks commands up by role, so that `gate scan` on a Pi Zero imports only the gate's
    role; the table must name each role's commands exactly, and the others must stay unimported."""
    import importlib
    import subprocess
    import sys

    from gate.cli.main import ROLES
    for role, commands in ROLES.items():
        assert tuple(importlib.import_module(f"gate.cli.{role}").COMMANDS) == commands, role
    code = ("import sys\nfrom gate.cli.main import build_parser, command_of\n"
            "build_parser(command_of(['-v', 'scan', '-c', 'x'])).parse_args(['-v', 'scan', '-c', 'x'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('gate.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['gate.cli.exits', 'gate.cli.gatecmds', 'gate.cli.main']"
    code = code.replace("['-v', 'scan', '-c', 'x']", "['--help']").replace(".parse_args(['--help'])", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert all(f"gate.cli.{r}" in out for r in ROLES)   # help (or an unknown command) lists every command
    from gate.cli.main import command_of
    assert [command_of(a) for a in (["-v", "scan"], ["--help", "scan"], ["--", "scan"], ["nope"])] == [
        "scan", None, None, "nope"]


def test_doctor_without_a_pin_library_says_so_once_without_python_warnings(tmp_path):
    """gpiozero warns of every pin library it passes over (four warnings with their source lines);
    doctor's own line already says what is missing and how to fix it, so those stay out."""
    text = (REPO / "config" / "turnstile.toml").read_text().replace('dir = "/var/lib/gate"', f'dir = "{tmp_path}"')
    cfg = tmp_path / "gate.toml"
    cfg.write_text(text)
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}   # gpiozero tries each library
    r = subprocess.run([sys.executable, "-m", "gate.cli", "doctor", "-c", str(cfg)], capture_output=True, text=True,
                       env=env, timeout=120, cwd=REPO)
    import platform
    if platform.machine() == "x86_64":   # no pin library works here (on a Pi one may)
        assert "FAIL gpio     no GPIO pin factory" in r.stdout and "python3-lgpio" in r.stdout, r.stdout + r.stderr
    assert "PinFactoryFallback" not in r.stdout + r.stderr and "warnings.warn" not in r.stderr, r.stderr
