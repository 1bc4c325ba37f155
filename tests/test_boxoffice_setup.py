"""Setting the box office up as a party of its own: `gate keys new -c boxoffice.toml` makes the keys
its config names, and `install-pi --role house` writes that config beside the house's."""

import os
import subprocess

from gate.config import parse
from tests.conftest import REPO, run_gate_cli


def test_boxoffice_keys_new_makes_the_keys_its_config_names(tmp_path):
    keys = tmp_path / "keys"
    cfg = tmp_path / "boxoffice.toml"
    cfg.write_text(f'[boxoffice]\nvenue = "hall"\n[signing]\nlist_signing_key = "{keys / "boxoffice.key"}"\n'
                   f'staff_key = "{keys / "staff.key"}"\nvenue_secret = "{keys / "venue.secret"}"\n')
    assert run_gate_cli("config", "check", str(cfg)).returncode == 2   # the keys are not there yet
    r = run_gate_cli("keys", "new", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout.count("made ") == 3 and "keys ready" in r.stdout, r.stdout + r.stderr
    assert {p.name for p in keys.iterdir()} == {"boxoffice.key", "boxoffice.pub", "staff.key", "staff.pub",
                                                "venue.secret"}
    assert all(oct((keys / n).stat().st_mode & 0o777) == "0o600" for n in ("boxoffice.key", "staff.key", "venue.secret"))
    before = (keys / "staff.key").read_bytes()
    r = run_gate_cli("keys", "new", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout.count("kept ") == 3 and (keys / "staff.key").read_bytes() == before
    r = run_gate_cli("config", "check", str(cfg))
    assert r.returncode == 0 and "box office for hall" in r.stdout, r.stderr
    cfg.write_text(cfg.read_text().replace("staff.key", "staff.pem"))
    r = run_gate_cli("keys", "new", "-c", str(cfg))
    assert r.returncode == 2 and "must end in .key" in r.stderr, r.stderr
    r = run_gate_cli("keys", "new", "-c", str(cfg), "--out", str(keys))
    assert r.returncode == 2 and "--out" in r.stderr


def test_boxoffice_installer_writes_its_config_beside_the_houses(tmp_path):
    """`install-pi --role house` writes boxoffice.toml (its own broker user, the roster) and makes its keys;
    the edits it makes to the example give a config the box office's commands accept."""
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "house", "--prefix",
                        str(tmp_path / "opt"), "--venue", "hall", "--gates", "door-a"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "install -m 0600 /etc/mosquitto/gate/users/boxoffice.password /etc/gate/mqtt-boxoffice.password" in r.stdout
    assert f"{tmp_path}/opt/.venv/bin/gate keys new -c /etc/gate/boxoffice.toml" in r.stdout
    if not os.path.exists("/etc/gate/boxoffice.toml"):   # a fresh box: the example would be installed
        assert "cp " + str(REPO / "config/boxoffice.toml") + " /etc/gate/boxoffice.toml" in r.stdout
        assert "would set [mqtt] in /etc/gate/boxoffice.toml to localhost:8883, TLS, user boxoffice" in r.stdout
    r = subprocess.run([str(REPO / "scripts/install-pi"), "--dry-run", "--role", "gate", "--prefix",
                        str(tmp_path / "opt")], capture_output=True, text=True)
    assert r.returncode == 0 and "keys new" not in r.stdout and "/etc/gate/boxoffice.toml\n" not in r.stdout
    # the installer's own edits, run for real on a copy of the example
    cfg = tmp_path / "boxoffice.toml"
    cfg.write_text((REPO / "config/boxoffice.toml").read_text().replace("/etc/gate/keys", str(tmp_path / "keys")))
    out = tmp_path / "broker"
    assert run_gate_cli("broker", "config", "--venue", "hall", "--out", str(out), "--gates", "door-a",
                        "--host", "localhost").returncode == 0
    script = (REPO / "scripts/install-pi").read_text()
    functions = "\n".join(script[script.index(f"{name}() {{"):].split("\n}\n")[0] + "\n}"
                          for name in ("set_mqtt", "set_box_office"))
    subprocess.run(["bash", "-c", f'{functions}\nset_mqtt "$1" boxoffice "$2"\nset_box_office "$1" "$3"', "-",
                    str(cfg), str(out / "users" / "boxoffice.password"), str(out / "roster.json")],
                   env=dict(os.environ, DRY="0", ETC=str(tmp_path)), check=True)
    (tmp_path / "venue-ca.crt").write_bytes((out / "ca.crt").read_bytes())
    r = run_gate_cli("keys", "new", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout.count("made ") == 3, r.stdout + r.stderr
    r = run_gate_cli("config", "check", str(cfg))
    assert r.returncode == 0 and "box office for hall" in r.stdout, r.stderr
    c = parse(cfg.read_text(), str(cfg))
    assert (c.mqtt.username, c.mqtt.port, c.mqtt.tls) == ("boxoffice", 8883, True)
    assert c.boxoffice.roster == str(out / "roster.json") and c.signing.staff_key == str(tmp_path / "keys" / "staff.key")
