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
