"""`gate broker config --bridge NAME --core HOST[:PORT]`: an entrance's broker, bridged to the core.

A large venue runs one broker per entrance, next to its gates, and one core broker where the house and
the box office are (docs/contract.md, "Many entrances"). Gates talk only to their entrance's broker;
Mosquitto's own bridge carries between entrance and core exactly what each side needs:

    out (entrance -> core)  each of its own gates' scans (the house counts them, the other entrances' gates
                            mark the tickets used), status (retained, with the gate's last will) and health
    in  (core -> entrance)  every gate's scans (used-ticket sync from the core's gates, the other entrances
                            and the house's pseudo-gate `pretix`), the ticket list and the venue control
                            message (both retained), and the house's resend requests to its own gates

One list (`bridge_topics`) makes both the bridge's `topic` lines and its user's ACL on the core, so the
two cannot disagree. On the core the bridge may write only its own gates' topics: a stolen entrance
broker speaks for its own doors, never for another entrance's or the house's.

Loops: a scan from entrance A goes out to the core and in to entrance B; B's bridge sends out only B's
own gates' topics, so it goes no further. The core does not send A's scan back down A's own bridge
(an MQTT 3.1.1 bridge with try_private is known to Mosquitto as a bridge, and its subscriptions are
no-local and retain-as-published), and A's broker never sends what came in on a bridge back out on
it. The house on the core receives each scan once (tests/test_bridges.py checks this with three brokers).

Outages: the bridge's session on the core is persistent (cleansession false), Mosquitto saves it, and
every topic line is QoS 1, so what either side published while the link was down waits in the other
broker's queue (max_queued_messages, max_queued_bytes) and is delivered when the link heals; both
sides keep deciding from what they hold meanwhile. `restart_timeout 1 2` retries within about 2 s
(Mosquitto 2.0.11's default backs off to 30 s).

The entrance's directory holds what brokerconf.py writes for a single broker (its own CA, certificate,
a user per gate, ACL), without house, box office or dashboard users (they use the core), plus:

    core-ca.crt   the core's CA certificate: the bridge checks the core broker's certificate against it
    gate.conf     listener, TLS, ACL and the bridge's connection block, which holds the bridge's password
                  (Mosquitto reads a bridge's password from its configuration only): mode 0640
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from gate.bus import brokerconf, topics, values
from gate.bus.brokerconf import BrokerConfigError

CORE_PORT = 8883
KEEPALIVE_S = 10      # a silently dead link (a cable pulled) is noticed within 15 s, then retried every 2 s
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PASSWORD_RE = re.compile(r"[!-~]{8,256}")   # printable, no spaces: it is one token of a config line


def bridge_topics(venue: str, gates: list[str]) -> list[tuple[str, str]]:
    """(topic, "out" | "in") for an entrance with `gates`: exactly what each side needs of the other."""
    out = []
    for g in gates:
        out += [(topics.scan(venue, g), "out"), (topics.status(venue, g), "out"),
                (topics.health(venue, g), "out"), (topics.resend(venue, g), "in")]
    return out + [(topics.scans(venue), "in"), (topics.tickets(venue), "in"), (topics.control(venue), "in")]


def core_acl(venue: str, name: str, gates: list[str]) -> list[str]:
    """The bridge user's section of the core's ACL: it writes what the bridge sends out, reads what it takes in."""
    lines = [f"# the bridge of entrance {name}: its gates' scans, status and health out; every scan,",
             "# the ticket list, venue control and its gates' resend requests in.", f"user {name}"]
    lines += [f"topic {'write' if d == 'out' else 'read'} {t}" for t, d in bridge_topics(venue, gates)]
    return lines + [""]


def parse_core(text: str) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 address in brackets) -> (host, port); the port defaults to 8883."""
    host, port = text, CORE_PORT
    m = re.fullmatch(r"(.+):(\d{1,5})", text)
    if m and (m.group(1).startswith("[") or ":" not in m.group(1)):
        host, port = m.group(1), int(m.group(2))
    if not _HOST_RE.fullmatch(host):
        raise BrokerConfigError(f"--core {text!r}: HOST[:PORT], a host name or address (IPv6 in brackets)")
    brokerconf.check_port(port)
    return host, port


def connection_block(venue: str, name: str, gates: list[str], core: str, core_ca: Path, password: str) -> str:
    """The Mosquitto bridge from this entrance to the core (mosquitto.conf(5), "Configuring Bridges")."""
    host, port = parse_core(core)
    lines = [
        "",
        f"# Bridge to the core broker: entrance {name}. Mosquitto reads bridges only at start:",
        "# restart it (not reload) after a change.",
        f"connection {name}",
        f"address {host}:{port}",
        "bridge_protocol_version mqttv311",
        "# The core knows this connection for a bridge: it sends nothing back down it that came up it,",
        "# and keeps the retain flag (the ticket list and control stay retained here for gates that start later).",
        "try_private true",
        f"bridge_cafile {core_ca}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        f"remote_clientid {name}",
        f"remote_username {name}",
        f"remote_password {password}",
        "# A persistent session with QoS 1 topics: what was published while the link was down is delivered",
        "# when it heals, in both directions.",
        "cleansession false",
        "start_type automatic",
        "restart_timeout 1 2",
        f"keepalive_interval {KEEPALIVE_S}",
        "# The core's ACL gives this bridge its gates' topics only; a state topic would need more.",
        "notifications false",
    ]
    lines += [f"topic {t} {d} 1" for t, d in bridge_topics(venue, gates)]
    return "\n".join(lines) + "\n"


def read_password(path) -> str:
    """The bridge's password from the file the core made for it (users/NAME.password there)."""
    try:
        pw = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerConfigError(f"bridge password file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not _PASSWORD_RE.fullmatch(pw):
        raise BrokerConfigError(f"bridge password file {path}: not a password written by gate broker config")
    return pw


def add_bridge(core_dir, venue: str, name: str, gates: list[str]) -> dict:
    """The core's side: the bridge's own user (password, ACL for exactly its gates' topics), kept in the roster.

    The gates are added to those the bridge had; the core's certificate and gate.conf are left alone."""
    brokerconf.check_names("bridge", [name])
    brokerconf.check_names("gate", gates)
    core_dir = Path(core_dir).resolve()
    if not (core_dir / "roster.json").exists():
        raise BrokerConfigError(f"{core_dir}: no core broker configured there (gate broker config --out it first)")
    roster = brokerconf._roster(core_dir, venue)
    if roster.get("bridge"):
        raise BrokerConfigError(f"{core_dir} is itself an entrance's broker, not the core")
    bridges = dict(roster["bridges"])
    bridges[name] = sorted(set(bridges.get(name, [])) | set(gates))
    users, made = brokerconf.write_parties(core_dir, {**roster, "bridges": bridges})
    return {"dir": str(core_dir), "users": users, "new_passwords": made, "gates": bridges[name],
            "password_file": str(core_dir / "users" / f"{name}.password"), "ca": str(core_dir / "ca.crt")}


def core_names(core_dir) -> list[str]:
    """The names in the core broker's certificate (a bridge's address must be one of them)."""
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate((Path(core_dir) / "broker.crt").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return [str(n.value) for n in san]


def _entrance_roster(out: Path, venue: str, name: str, gates: list[str], hosts: list[str], core: str,
                     port: int) -> dict:
    """Check what an entrance is asked to be, before anything is written; the roster of an earlier run."""
    if not values.is_id(venue):
        raise BrokerConfigError(f"venue {venue!r}: letters, digits, '_' and '-' only")
    brokerconf.check_names("bridge", [name])
    brokerconf.check_names("gate", gates)
    if name in gates:
        raise BrokerConfigError(f"{name}: a name is a gate or an entrance's bridge, not both")
    if not hosts:
        raise BrokerConfigError("the broker certificate needs at least one host name or address")
    brokerconf.check_port(port)
    parse_core(core)
    roster = brokerconf._roster(out, venue)
    if (out / "roster.json").exists() and not roster.get("bridge"):
        raise BrokerConfigError(f"{out} holds a core broker's configuration (house, box office): give the "
                                "entrance its own directory")
    if roster.get("bridge") and roster["bridge"]["name"] != name:
        raise BrokerConfigError(f"{out} is the broker of entrance {roster['bridge']['name']!r}, not {name!r}")
    if not gates and not roster["gates"]:
        raise BrokerConfigError("an entrance needs its gates (--gates)")
    return roster


def write_entrance(out, venue: str, name: str, gates: list[str], hosts: list[str], core: str, *,
                   core_ca, password_file, port: int = 8883, bind: str = "") -> dict:
    """Write (or update) an entrance broker's directory: its gates' users and ACL, TLS, the bridge to `core`."""
    out = Path(out).resolve()
    roster = _entrance_roster(out, venue, name, gates, hosts, core, port)
    from gate.bus.tls import ca_file_problem
    problem = ca_file_problem(str(core_ca))
    if problem:
        raise BrokerConfigError(f"core CA: {problem}")
    password = read_password(password_file)
    gates = sorted(set(gates) | set(roster["gates"]))
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o750)
    if Path(core_ca).resolve() != out / "core-ca.crt":
        shutil.copyfile(core_ca, out / "core-ca.crt")
        os.chmod(out / "core-ca.crt", 0o644)
    made = brokerconf._passwords(out, gates)
    acl = [f"# Generated by `gate broker config --bridge {name}` for venue {venue}. Regenerate rather than edit.",
           "# Users not listed here may do nothing at all; the house and box office use the core broker.", ""]
    for g in gates:
        acl += brokerconf.gate_acl(venue, g)
    brokerconf._write(out / "acl", "\n".join(acl).encode(), 0o640)
    brokerconf._certificates(out, venue, hosts)
    conf = brokerconf.mosquitto_conf(out, port, bind) + connection_block(venue, name, gates, core,
                                                                         out / "core-ca.crt", password)
    brokerconf._write(out / "gate.conf", conf.encode(), 0o640)
    brokerconf._write(out / "roster.json", json.dumps({"venue": venue, "gates": gates, "dashboards": [],
                                                       "bridges": {}, "bridge": {"name": name, "core": core}},
                                                      indent=1).encode(), 0o640)
    return {"dir": str(out), "conf": str(out / "gate.conf"), "new_passwords": made, "users": gates}


def configure(out, venue: str, name: str, gates: list[str], hosts: list[str], core: str, *, core_dir=None,
              core_ca=None, password_file=None, port: int = 8883, bind: str = "") -> dict:
    """The entrance's broker in `out`; with `core_dir` (the core's directory at hand) the core's side too.

    Without it, the core must already have the bridge (`gate broker config --bridge NAME --gates ...`
    there) and `core_ca` and `password_file` are the copies of its ca.crt and users/NAME.password."""
    made_core = None
    if core_dir:
        earlier = _entrance_roster(Path(out).resolve(), venue, name, gates, hosts, core, port)["gates"]
        host, _ = parse_core(core)
        names = core_names(core_dir)
        if names and host.strip("[]") not in names:
            raise BrokerConfigError(f"--core {host} is not a name in the core broker's certificate "
                                    f"({', '.join(names)}): use one of them, or add it there with --host")
        made_core = add_bridge(core_dir, venue, name, sorted(set(gates) | set(earlier)))
        core_ca, password_file = made_core["ca"], made_core["password_file"]
    if not core_ca or not password_file:
        raise BrokerConfigError("an entrance needs the core's CA certificate and its bridge's password: "
                                "--core-dir, or --core-ca and --bridge-password-file")
    made = write_entrance(out, venue, name, gates, hosts, core, core_ca=core_ca, password_file=password_file,
                          port=port, bind=bind)
    made["core"] = made_core
    return made
