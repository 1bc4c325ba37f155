"""`gate broker config --bridge` and `install-pi --role entrance`: what an entrance's broker and the core
are told, checked against each other and against what must be refused (the brokers run in test_bridges.py)."""

import os
import stat
import subprocess

from tests.conftest import REPO, run_gate_cli


def topic_lines(conf):
    return {tuple(line.split()[1:3]) for line in conf.splitlines() if line.startswith("topic ")}


def acl_section(acl, user):
    lines = acl.split(f"user {user}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {tuple(line.split()[1:3]) for line in lines if line.startswith("topic ")}


def test_bridge_config_core_and_entrance_agree_on_exactly_the_topics(tmp_path):
    core, ent, ent_b = tmp_path / "core", tmp_path / "ent", tmp_path / "ent-b"
    base = ["broker", "config", "--venue", "hall", "--host", "localhost"]
    assert run_gate_cli(*base, "--out", str(core), "--gates", "door-x").returncode == 0
    r = run_gate_cli(*base, "--out", str(ent), "--bridge", "entrance-a", "--core", "localhost",
                     "--core-dir", str(core), "--gates", "door-a,door-a2", "--port", "18884")
    assert r.returncode == 0, r.stderr
    conf, acl = (ent / "gate.conf").read_text(), (core / "acl").read_text()
    # The bridge's topic lines and its user's ACL on the core come from one list: out = write, in = read.
    lines = topic_lines(conf)
    assert lines == {("gate/hall/door-a/scan", "out"), ("gate/hall/door-a/status", "out"),
                     ("gate/hall/door-a/health", "out"), ("gate/hall/door-a/resend", "in"),
                     ("gate/hall/door-a2/scan", "out"), ("gate/hall/door-a2/status", "out"),
                     ("gate/hall/door-a2/health", "out"), ("gate/hall/door-a2/resend", "in"),
                     ("gate/hall/+/scan", "in"), ("gate/hall/tickets", "in"), ("gate/hall/control", "in")}
    assert acl_section(acl, "entrance-a") == {("write" if d == "out" else "read", t) for t, d in lines}
    assert all(f"topic {t} {d} 1" in conf for t, d in lines)   # QoS 1 everywhere
    for line in ("connection entrance-a", "address localhost:8883", "cleansession false", "restart_timeout 1 2",
                 "remote_username entrance-a", "bridge_protocol_version mqttv311", f"bridge_cafile {ent}/core-ca.crt",
                 f"remote_password {(core / 'users' / 'entrance-a.password').read_text().strip()}"):
        assert f"\n{line}\n" in conf, line
    assert (ent / "core-ca.crt").read_bytes() == (core / "ca.crt").read_bytes()
    assert stat.S_IMODE(os.stat(ent / "gate.conf").st_mode) == 0o640   # it holds the bridge's password
    # The entrance has users for its own gates only; the core one more, the bridge.
    users = lambda d: {line.split(":")[0] for line in (d / "passwd").read_text().splitlines()}
    assert users(ent) == {"door-a", "door-a2"}
    assert users(core) == {"door-x", "house", "house-standby", "boxoffice", "dashboard", "entrance-a"}
    assert "user house" not in (ent / "acl").read_text()
    # The two-step way (the core elsewhere): the core's side, then the entrance from copies.
    r = run_gate_cli("broker", "config", "--venue", "hall", "--out", str(core), "--bridge", "entrance-b",
                     "--gates", "door-b")
    assert r.returncode == 0 and "users/entrance-b.password" in r.stdout, r.stderr
    r = run_gate_cli(*base, "--out", str(ent_b), "--bridge", "entrance-b", "--core", "127.0.0.1:9999",
                     "--core-ca", str(core / "ca.crt"), "--bridge-password-file",
                     str(core / "users" / "entrance-b.password"), "--gates", "door-b")
    assert r.returncode == 0, r.stderr
    assert "address 127.0.0.1:9999\n" in (ent_b / "gate.conf").read_text()
    # A later run adds a gate and keeps every password; the core's side follows (--core-dir).
    pw = (ent / "users" / "door-a.password").read_text()
    bridge_pw = (core / "users" / "entrance-a.password").read_text()
    r = run_gate_cli(*base, "--out", str(ent), "--bridge", "entrance-a", "--core", "localhost",
                     "--core-dir", str(core), "--gates", "door-a3", "--port", "18884")
    assert r.returncode == 0, r.stderr
    assert (ent / "users" / "door-a.password").read_text() == pw
    assert (core / "users" / "entrance-a.password").read_text() == bridge_pw
    assert ("write", "gate/hall/door-a3/scan") in acl_section((core / "acl").read_text(), "entrance-a")
    assert ("write", "gate/hall/door-a/scan") in acl_section((core / "acl").read_text(), "entrance-a")
    assert "topic gate/hall/door-a3/scan out 1" in (ent / "gate.conf").read_text()
    # What cannot work is refused before anything is written, with exit 2 and no traceback.
    bad = [
        [*base, "--out", str(ent), "--core", "localhost"],                                  # --core without --bridge
        [*base, "--out", str(core), "--bridge", "entrance-c"],                              # core side, no gates
        [*base, "--out", str(core), "--bridge", "entrance-c", "--gates", "door-x"],         # a core gate
        [*base, "--out", str(core), "--bridge", "entrance-c", "--gates", "door-a"],         # entrance A's gate
        [*base, "--out", str(core), "--bridge", "door-x", "--gates", "door-q"],             # a gate's name
        [*base, "--out", str(core), "--bridge", "house", "--gates", "door-q"],              # reserved
        [*base, "--out", str(core), "--bridge", "house-standby", "--gates", "door-q"],      # reserved
        [*base, "--out", str(ent), "--gates", "door-q"],                                    # an entrance as a core
        [*base, "--out", str(core), "--bridge", "entrance-a", "--core", "localhost", "--core-dir", str(core),
         "--gates", "door-q"],                                                              # the core as an entrance
        [*base, "--out", str(tmp_path / "e2"), "--bridge", "entrance-a", "--core", "core.example",
         "--core-dir", str(core), "--gates", "door-a"],                                     # not in the certificate
        [*base, "--out", str(tmp_path / "e3"), "--bridge", "entrance-b", "--core", "localhost",
         "--gates", "door-b"],                                                              # no CA, no password
        [*base, "--out", str(tmp_path / "e4"), "--bridge", "entrance-b", "--core", "localhost", "--core-ca",
         str(core / "ca.crt"), "--bridge-password-file", str(core / "ca.crt"), "--gates", "door-b"],
        [*base, "--out", str(tmp_path / "e5"), "--bridge", "entrance-b", "--core", "local host:x", "--core-dir",
         str(core), "--gates", "door-b"],
        [*base, "--out", str(tmp_path / "e6"), "--bridge", "entrance-b", "--core", "localhost", "--core-dir",
         str(core), "--gates", "door-b", "--dashboards", "screen"],
    ]
    acl_before = (core / "acl").read_text()
    for args in bad:
        r = run_gate_cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr, (args, r.stdout, r.stderr)
    assert (core / "acl").read_text() == acl_before
    assert not (tmp_path / "e2").exists()


def test_bridge_installer_entrance_role(tmp_path):
    cmd = [str(REPO / "scripts/install-pi"), "--dry-run", "--prefix", str(tmp_path / "opt")]
    r = subprocess.run(cmd + ["--role", "entrance", "--core", "core.local", "--bridge", "entrance-a", "--venue",
                              "hall", "--gates", "door-a,door-b", "--broker-host", "entrance-a.local"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (f"{tmp_path}/opt/.venv/bin/gate broker config --out /etc/mosquitto/gate --venue hall --bridge entrance-a "
            "--core core.local --core-ca /etc/gate/core-ca.crt --bridge-password-file /etc/gate/bridge.password "
            "--gates door-a,door-b --host entrance-a.local --host localhost") in r.stdout
    assert "ln -sfn /etc/mosquitto/gate/gate.conf /etc/mosquitto/conf.d/gate.conf" in r.stdout
    assert "systemctl restart mosquitto" in r.stdout
    assert "gate-scan.service" not in r.stdout and "gate-house.service" not in r.stdout
    # The core's side: the bridge's own user for the entrance's gates.
    r = subprocess.run(cmd + ["--role", "house", "--venue", "hall", "--bridge", "entrance-a", "--gates",
                              "door-a,door-b"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if not os.path.exists("/etc/mosquitto/gate/roster.json"):   # a new core is made first, without these gates
        assert "broker config --out /etc/mosquitto/gate --gates  --venue hall" in r.stdout
    assert ("broker config --out /etc/mosquitto/gate --venue hall --bridge entrance-a --gates door-a,door-b"
            in r.stdout)
    for bad in (["--role", "entrance", "--bridge", "e", "--venue", "hall", "--gates", "g"],      # no --core
                ["--role", "entrance", "--core", "c", "--venue", "hall", "--gates", "g"],        # no --bridge
                ["--role", "gate", "--core", "c"]):
        r = subprocess.run(cmd + bad, capture_output=True, text=True)
        assert r.returncode == 2 and "install-pi:" in r.stderr, (bad, r.stderr)
