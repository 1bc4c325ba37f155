"""Deployment: systemd units, the Pi install script's dry run, gate doctor, the demo."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from gate.sim.render import compose
from tests.conftest import REPO, free_port, run_gate_cli


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_deploy_systemd_units_verify(tmp_path):
    gate_bin = shutil.which("gate") or str(REPO / ".venv/bin/gate")
    for u in ("gate-scan", "gate-house"):
        text = (REPO / "systemd" / f"{u}.service").read_text()
        assert "Type=notify" in text and "Restart=always" in text and "WatchdogSec=" in text
        (tmp_path / f"{u}.service").write_text(text.replace("/opt/gate/.venv/bin/gate", gate_bin))
    scan = (REPO / "systemd/gate-scan.service").read_text()
    assert "PrivateDevices=" not in scan and "SupplementaryGroups=gpio video" in scan
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "gate-scan.service"),
                        str(tmp_path / "gate-house.service")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_deploy_install_script_dry_run_changes_nothing(tmp_path):
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "both", "--prefix",
                        str(tmp_path / "opt")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "venv --system-site-packages" in out and "systemctl enable gate-scan.service" in out
    assert "python3-picamera2" in out or "all present" in out
    assert not (tmp_path / "opt").exists()
    has_camera_pkg = subprocess.run(["apt-cache", "show", "python3-picamera2"], capture_output=True).returncode == 0
    if not has_camera_pkg:   # plain Debian: says so, and shows the drop-in it would write
        assert "NOT A RASPBERRY PI" in out and "no camera hardware: replay source /var/lib/gate/replay" in out
        assert "--source replay:/var/lib/gate/replay --loop" in out
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--role", "nonsense", "--dry-run"], capture_output=True)
    assert r.returncode == 2


def test_deploy_install_script_dry_run_standby_house(tmp_path):
    """--role standby: the house's unit and a house.toml that stands by on the core house's broker; no broker."""
    script = str(REPO / "scripts/install-pi")
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    r = subprocess.run([script, "--dry-run", "--role", "standby", "--core", "house.local:8884", "--venue", "hall",
                        "--prefix", str(tmp_path / "opt")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "systemctl enable gate-house.service" in out and "gate-scan" not in out
    ran = [line for line in out.splitlines() if line.startswith("would run: ")]
    for never in ("mosquitto", "broker config", "keys new", "/etc/gate/boxoffice.toml"):
        # no broker, no box office, no keys of its own (the examples are copied as for every role)
        assert not [line for line in ran if never in line.replace(".toml.example", "")], never
    assert "chmod 0640 /etc/gate/mqtt-house-standby.password" in out
    assert not (tmp_path / "opt").exists() and not list((tmp_path / "tmp").iterdir())
    written = "\n".join(line[6:] for line in out.splitlines() if line.startswith("    | "))
    assert "would write /etc/gate/house.toml:" in out and written.count("[mqtt]") == 1
    # What it would write, with the core's files where it points (as `gate broker config` makes them there).
    core = tmp_path / "core"
    assert run_gate_cli("broker", "config", "--venue", "hall", "--out", str(core), "--host", "house.local",
                        "--gates", "door-a").returncode == 0
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(core / "ca.crt", etc / "venue-ca.crt")
    shutil.copy(core / "users" / "house-standby.password", etc / "mqtt-house-standby.password")
    path = tmp_path / "house.toml"
    path.write_text(written.replace("/etc/gate/", f"{etc}/").replace("/var/lib/gate-house", str(tmp_path / "state")))
    from gate.config import parse
    from gate.config.house import house_id
    cfg = parse(path.read_text(), str(path))
    assert cfg.house.standby and cfg.house.venue == "hall" and house_id(cfg) == "house-standby"
    m = cfg.mqtt
    assert (m.host, m.port, m.tls, m.username, m.keepalive) == ("house.local", 8884, True, "house-standby", 5)
    assert run_gate_cli("config", "check", str(path)).returncode == 0
    # The core house it stands by for must be named; a broker's options belong to the core.
    for bad in (["--role", "standby"], ["--role", "standby", "--core", "x", "--broker-host", "y"],
                ["--role", "standby", "--core", "two words"], ["--role", "house", "--core", "house.local"]):
        r = subprocess.run([script, "--dry-run", *bad], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and "install-pi:" in r.stderr, bad
    r = subprocess.run([script, "--dry-run", "--role", "house", "--prefix", str(tmp_path / "opt")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "--role standby --core THIS_HOST" in r.stdout, r.stderr


def test_deploy_doctor_all_good_and_all_bad(tmp_path, broker, tickets_csv):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(compose(None, "empty", rng=np.random.default_rng(0))).save(frames / "0.png")
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="d"\nvenue="hall"\nevents=["eve"]\n[camera]\nsource="replay:{frames}"\n'
                   f'[feedback]\nrelay=24\nled_red=17\nled_green=27\nled_blue=22\n'
                   f'[mqtt]\nhost="127.0.0.1"\nport={broker.port}\n[storage]\ndir="{tmp_path}/s"\n')
    assert run_gate_cli("tickets", "import", "-c", str(cfg), str(tickets_csv)).returncode == 0
    r = run_gate_cli("doctor", "-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK   camera" in r.stdout and "OK   broker" in r.stdout and "OK   tickets  7 tickets" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[gate]\nid="d"\nvenue="hall"\n[camera]\nsource="picamera2"\n'
                   f'[mqtt]\nhost="127.0.0.1"\nport={free_port()}\n[storage]\ndir="{tmp_path}/empty"\n')
    r = run_gate_cli("doctor", "-c", str(bad))
    assert r.returncode == 1
    assert "FAIL camera" in r.stdout and "python3-picamera2" in r.stdout
    assert "FAIL broker" in r.stdout and "mosquitto" in r.stdout
    assert "FAIL tickets" in r.stdout and "gate tickets import" in r.stdout


def test_deploy_demo_smoke_house_count_equals_admissible(tmp_path):
    """The README's main command, for ~20 s: the house count matches the crowd's admissible tickets."""
    port = free_port()
    r = run_gate_cli("demo", "--listen", f"127.0.0.1:{port}", "--patrons", "30", timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"dashboard at http://127.0.0.1:{port}/" in r.stdout
    summary = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
    assert summary["house_admitted"] == summary["expected_admitted"] > 15
    assert not summary["missing"] and not summary["unexpected"]
    assert sum(summary["rejected"].values()) > 0
    assert not [d for d in os.listdir("/tmp") if d.startswith("gate-demo-")]   # nothing left behind
    report = [l.split(" is ", 1)[1] for l in r.stdout.splitlines() if "the night's house report is" in l]
    assert report and os.path.exists(report[0]), r.stdout[-2000:]              # but the night's report
    os.unlink(report[0])
    still = []
    for pid in filter(str.isdigit, os.listdir("/proc")):                    # nothing left running
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "gate-demo-" in cmd:
            still.append(cmd)
    assert not still


def test_deploy_mock_pins_leave_a_trace(tmp_path):
    """install-pi's mock pins (no GPIO here) log every change, so a stop can be seen to leave the relay low."""
    log = tmp_path / "pins.log"
    script = ("from gate.config import FeedbackSection\n"
              "from gate.feedback import Feedback\n"
              "fb = Feedback.from_config(FeedbackSection(relay=24, led_red=17, led_green=27, led_blue=22))\n"
              "fb.relay.on()\n"
              "fb.close()\n")
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "gaterecording",
           "GATE_MOCK_PIN_LOG": str(log)}
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    relay = [line.split()[2] for line in log.read_text().splitlines() if line.split()[1] == "GPIO24"]
    assert relay == ["0", "1", "0", "released"]
    assert log.read_text().count("released") == 4     # each pin once


def test_deploy_doctor_names_the_no_hardware_drop_in(tmp_path):
    from gate.cli.doctor import hardware_note
    assert hardware_note(tmp_path / "absent.conf") == ""
    conf = tmp_path / "no-hardware.conf"
    conf.write_text("# Written by install-pi\n# no camera hardware: replay source /x (y).\n[Service]\n")
    assert hardware_note(conf) == f"gate-scan.service runs without hardware ({conf}): no camera hardware: replay source /x (y)."
