"""Bad days on the bus: TLS and credential mistakes against a real Mosquitto with a TLS listener.

Each mistake must be logged once, in words that say what to check, by the process
that has it; `gate doctor` says the same words; nobody prints a traceback.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import signal
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gate.bus.broker import PrivateBroker
from gate.config import parse
from tests.conftest import free_port, run_gate_cli, wait_for


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory, cn="venue CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{cn.replace(' ', '-')}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_server_cert(directory, ca_key, ca_cert, names=("localhost",), ips=("127.0.0.1",)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0] if names else ips[0]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cp, kp = directory / "server.crt", directory / "server.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp


class TlsBroker(PrivateBroker):
    """The private broker with a second, TLS listener (the plain one stays for contrast)."""

    def __init__(self, workdir, ca_path, cert, key):
        super().__init__(workdir, port=free_port())
        self.tls_port = free_port()
        conf = self.dir / "mosquitto.conf"
        conf.write_text(conf.read_text() + f"listener {self.tls_port} 127.0.0.1\ncafile {ca_path}\n"
                        f"certfile {cert}\nkeyfile {key}\n")


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca_key, ca_cert, ca_path = make_ca(d)
    _, _, other_ca = make_ca(d, "some other CA")
    cert, key = make_server_cert(d, ca_key, ca_cert, names=("broker.example",), ips=("127.0.0.1",))
    (d / "named").mkdir()
    named_cert, named_key = make_server_cert(d / "named", ca_key, ca_cert, names=("broker.example",), ips=())
    return {"ca": ca_path, "other_ca": other_ca, "cert": cert, "key": key,
            "named_cert": named_cert, "named_key": named_key, "dir": d}


@pytest.fixture
def tls_broker(tmp_path, pki):
    b = TlsBroker(tmp_path / "tlsbroker", pki["ca"], pki["cert"], pki["key"])
    b.start()
    yield b
    b.stop()


def house_toml(tmp_path, port, mqtt_extra, name="house"):
    text = (f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\nclient_id = "house-hall"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 5\n{mqtt_extra}'
            f'[storage]\ndir = "{tmp_path / name}"\n')
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def run_house_until_tried(path, broker, port, tries=2):
    """`gate house` until the broker has seen it try `tries` times to connect on `port` (paho retries
    every second), then SIGTERM; its return code and stderr."""
    log = broker.dir / "mosquitto.log"

    def attempts():
        return log.read_text(errors="replace").count(f" on port {port}.") if log.exists() else 0
    before = attempts()
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    p = subprocess.Popen([sys.executable, "-m", "gate.cli", "house", "-c", str(path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: attempts() >= before + tries or p.poll() is not None, 60, what=f"{tries} tries to connect")
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
    return p.returncode, err


def test_bus_tls_house_connects_with_the_venue_ca(tmp_path, pki, tls_broker):
    """The positive control: the right CA on the TLS port connects, and nothing is complained about."""
    from gate.house.build import build_house
    p = house_toml(tmp_path, tls_broker.tls_port, f'tls = true\nca_file = "{pki["ca"]}"\n')
    svc = build_house(parse(p.read_text(), str(p)))
    svc.start()
    try:
        wait_for(svc.connected.is_set, what="house connected over TLS")
        assert svc.bus.client.report.failures == 0
    finally:
        svc.close()
    r = run_gate_cli("doctor", "-c", str(p))
    assert "OK   broker   connected to broker 127.0.0.1:%d (TLS)" % tls_broker.tls_port in r.stdout, r.stdout


@pytest.mark.parametrize("case", ["wrong_ca", "tls_on_plain_port", "host_mismatch"])
def test_bus_tls_mistake_logged_once_by_the_house_and_said_by_doctor(tmp_path, pki, tls_broker, case):
    """Used to fail closed with nothing in the log of `gate house` (only doctor named the SSL error)."""
    if case == "wrong_ca":
        extra, port, words = f'tls = true\nca_file = "{pki["other_ca"]}"\n', tls_broker.tls_port, \
            f"not signed by the CA in {pki['other_ca']}"
    elif case == "tls_on_plain_port":
        extra, port, words = f'tls = true\nca_file = "{pki["ca"]}"\n', tls_broker.port, "TLS listener"
    else:
        b = TlsBroker(tmp_path / "named", pki["ca"], pki["named_cert"], pki["named_key"]).start()
        extra, port, words = f'tls = true\nca_file = "{pki["ca"]}"\n', b.tls_port, "not for '127.0.0.1'"
    try:
        p = house_toml(tmp_path, port, extra)
        rc, err = run_house_until_tried(p, b if case == "host_mismatch" else tls_broker, port)
        assert "Traceback" not in err, err
        lines = [l for l in err.splitlines() if words in l]
        assert len(lines) == 1, err      # once, though paho retried every second
        assert f"broker 127.0.0.1:{port} (TLS)" in lines[0] and "ERROR" in lines[0]
        r = run_gate_cli("doctor", "-c", str(p))
        assert "FAIL broker" in r.stdout and words in r.stdout, r.stdout
        assert "Traceback" not in r.stderr
    finally:
        if case == "host_mismatch":
            b.stop()


def test_bus_tls_gate_link_logs_why_and_when_it_is_back(tmp_path, pki, tls_broker, caplog):
    """The gate's own process says why it cannot reach the broker (wrong CA), once, then that it is back."""
    from gate.link import GateLink
    from tests.conftest import gate_config
    cfg = gate_config(tmp_path, port=tls_broker.tls_port, mqtt_on=True)
    cfg.mqtt.tls, cfg.mqtt.ca_file = True, str(pki["other_ca"])
    caplog.set_level(logging.INFO, logger="gate")
    link = GateLink(cfg, tmp_path / "o.db", profile="turnstile")
    link.start()
    try:
        wait_for(lambda: link.client.report.failures >= 3, what="three failed attempts")
        said = [r for r in caplog.records if "not signed by the CA" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR
        assert not link.connected.is_set()
    finally:
        link.close(drain_s=0)


def test_bus_credentials_refused_logged_once_with_what_to_check(tmp_path, make_broker, caplog):
    import shutil

    from gate.link import GateLink
    from tests.conftest import gate_config
    passwd = tmp_path / "passwd"
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-c", "-b", str(passwd),
                    "door-a", "correct horse"], check=True)
    b = make_broker()
    conf = b.dir / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("allow_anonymous true", f"allow_anonymous false\npassword_file {passwd}"))
    b.stop()
    b.start()
    (tmp_path / "pw").write_text("battery staple\n")
    cfg = gate_config(tmp_path, port=b.port, mqtt_on=True)
    cfg.mqtt.username, cfg.mqtt.password_file = "door-a", str(tmp_path / "pw")
    caplog.set_level(logging.INFO, logger="gate")
    link = GateLink(cfg, tmp_path / "o.db", profile="turnstile")
    link.start()
    try:
        wait_for(lambda: link.client.report.failures >= 3, what="three refusals")
        said = [r.getMessage() for r in caplog.records if "refused our credentials" in r.getMessage()]
        assert len(said) == 1 and str(tmp_path / "pw") in said[0] and "door-a" in said[0], said
    finally:
        link.close(drain_s=0)


def test_bus_operator_mistakes_end_without_traceback(tmp_path, pki):
    """Garbage CA, a password_file that is a directory, a missing CA file, --publish to no broker."""
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is not a certificate\n")
    (tmp_path / "pwdir").mkdir()
    missing = tmp_path / "nope" / "ca.crt"
    closed = free_port()
    tickets = tmp_path / "t.csv"
    tickets.write_text("ticket_id,code,event\nT1,C1,eve\n")
    from tests.conftest import VenueKeys
    signing = VenueKeys(tmp_path / "keys").signing_toml(publisher=True)
    cases = [
        (f'tls = true\nca_file = "{garbage}"\n', 2, [str(garbage), "PEM"]),
        (f'username = "boxoffice"\npassword_file = "{tmp_path / "pwdir"}"\n', 2, ["directory"]),
        (f'tls = true\nca_file = "{missing}"\n', 2, [str(missing), "does not exist"]),
        ("", 1, [f"nothing accepts connections on 127.0.0.1:{closed}", "systemctl status mosquitto"]),
    ]
    for extra, code, words in cases:
        p = tmp_path / "boxoffice.toml"
        p.write_text(f'[boxoffice]\nvenue = "hall"\n[mqtt]\nhost = "127.0.0.1"\nport = {closed}\n{extra}'
                     f'[storage]\ndir = "{tmp_path / "s"}"\n{signing}')
        r = run_gate_cli("tickets", "import", "-c", str(p), str(tickets), "--publish")
        assert r.returncode == code, (extra, r.stderr)
        assert all(w in r.stderr for w in words) and "Traceback" not in r.stderr, r.stderr


def test_bus_make_client_names_the_path_of_a_missing_ca_file(tmp_path):
    """Without the config check in front (a file removed after start): the path, not a bare Errno 2."""
    from gate.bus.client import BusError, make_client
    from gate.config import MqttSection
    m = MqttSection(tls=True, ca_file=str(tmp_path / "gone.crt"))
    with pytest.raises(BusError, match=str(tmp_path / "gone.crt")):
        make_client(m, "x")
