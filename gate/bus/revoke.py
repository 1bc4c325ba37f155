"""`gate broker revoke NAME`: a party's credential leaves the broker, now (containment of a stolen door).

In the directory `gate broker config` wrote (a core's, or an entrance's with `--bridge`): the
party's line leaves the password file, its block leaves the ACL, it leaves roster.json (listed
under `revoked`; a later `gate broker config` naming it again gives it a new password, never the
old one: how a replaced Pi gets its own), and its users/NAME.password is deleted. Then Mosquitto
is told to reload (SIGHUP: `systemctl reload mosquitto`, or the pid given): on reload it re-reads
the password file and the ACL and disconnects clients whose credentials no longer pass.

The command then checks the effect from outside: it connects to the broker's listener as the
revoked party, with the password it had, and expects to be refused. Exit 0 only when it was; 1
when the reload or the check failed (the files are changed either way, and the message says what
is left to do); 2 for a name that is not a gate, dashboard or bridge of this directory.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from gate.bus.brokerconf import BrokerConfigError, _roster, _write

CHECK_S = 10.0   # how long the check waits for the broker's answer (a reload is handled within a second)


def _without_user(acl: str, name: str) -> str:
    """The ACL text without `name`'s block: its `user` line and the topic lines under it (left in place, they
    would belong to the user above)."""
    out, skipping = [], False
    for line in acl.splitlines():
        word = line.split()[:1]
        if word == ["user"]:
            skipping = line.split()[1:] == [name]
            if skipping:
                continue
        elif skipping and word in (["topic"], ["pattern"]):
            continue
        else:
            skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def remove(out, name: str) -> str:
    """Take `name` (a gate, dashboard or entrance's bridge of this broker) out of the password file, ACL and
    roster; returns the password it had ("" if none)."""
    out = Path(out).resolve()
    try:
        venue = json.loads((out / "roster.json").read_text(encoding="utf-8"))["venue"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BrokerConfigError(f"{out}: no roster.json written by gate broker config") from None
    roster = _roster(out, venue)
    if name in roster["gates"]:
        roster["gates"] = [g for g in roster["gates"] if g != name]
    elif name in roster["dashboards"]:
        roster["dashboards"] = [d for d in roster["dashboards"] if d != name]
    elif name in roster["bridges"]:
        del roster["bridges"][name]
    else:
        behind = sorted(b for b, gates in roster["bridges"].items() if name in gates)
        if behind:
            raise BrokerConfigError(f"{name} connects to the broker of entrance {behind[0]}, not this one: "
                                    "revoke it there (its directory from gate broker config --bridge)")
        raise BrokerConfigError(f"{name!r} is not a gate, dashboard or bridge configured in {out} "
                                f"(gates: {', '.join(roster['gates']) or 'none'})")
    pw_file = out / "users" / f"{name}.password"
    try:
        password = pw_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        password = ""
    lines = (out / "passwd").read_text(encoding="utf-8").splitlines()
    _write(out / "passwd", "".join(f"{x}\n" for x in lines if not x.startswith(f"{name}:")).encode(), 0o640)
    _write(out / "acl", _without_user((out / "acl").read_text(encoding="utf-8"), name).encode(), 0o640)
    roster["revoked"] = sorted(set(roster.get("revoked", [])) | {name})
    _write(out / "roster.json", json.dumps(roster, indent=1).encode(), 0o640)
    pw_file.unlink(missing_ok=True)
    return password


def reload(pid: int | None = None, pid_file: str | None = None) -> tuple[bool, str]:
    """SIGHUP to the broker: to `pid` (or the one in `pid_file`), else `systemctl reload mosquitto`."""
    if pid_file:
        try:
            pid = int(Path(pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            return False, f"cannot read a pid from {pid_file} ({exc})"
    if pid:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return False, f"no process {pid}: is the broker running?"
        except PermissionError:
            return False, f"not allowed to signal process {pid} (run as root, or as the broker's user)"
        return True, f"sent SIGHUP to {pid}"
    try:
        r = subprocess.run(["systemctl", "reload", "mosquitto"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"systemctl reload mosquitto failed ({exc}); give the broker's pid with --pid"
    if r.returncode:
        return False, f"systemctl reload mosquitto: {(r.stderr or r.stdout).strip() or 'exit ' + str(r.returncode)}"
    return True, "systemctl reload mosquitto"


def listener(out) -> tuple[str, int]:
    """(address, port) of the listener in the generated gate.conf."""
    for line in (Path(out) / "gate.conf").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts[:1] == ["listener"] and len(parts) >= 2:
            return (parts[2] if len(parts) > 2 else "127.0.0.1"), int(parts[1])
    raise BrokerConfigError(f"{out}/gate.conf has no listener line")


def refused(out, name: str, password: str, host: str, port: int, timeout: float = CHECK_S) -> tuple[bool, str]:
    """Connect as `name` with its old password: (True, why) when the broker says no."""
    import paho.mqtt.client as mqtt
    answer: list = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(Path(out) / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    # The venue CA's own broker, at the address this directory says it listens on: the chain is checked,
    # the name need not be one of the certificate's (it may list only the names the gates use). The only
    # secret sent is the password being revoked.
    c.tls_insecure_set(True)
    c.username_pw_set(name, password)

    def on_connect(client, userdata, flags, rc, props):
        answer.append(rc)
        done.set()
    c.on_connect = on_connect
    c.on_disconnect = lambda *a: done.set()
    try:
        c.connect(host, port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return False, f"could not reach the broker at {host}:{port} to check ({exc})"
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.disconnect()
        c.loop_stop()
    if not answer:
        return False, f"the broker at {host}:{port} gave no answer to check with"
    rc = answer[0]
    if rc.is_failure:
        return True, f"the broker refuses {name} ({rc})"
    return False, f"the broker still accepts {name}'s old password"


def main(out, name: str, pid: int | None = None, pid_file: str | None = None, host: str | None = None) -> int:
    """The command (see the module's docstring); prints what happened."""
    import time
    try:
        password = remove(out, name)
        addr, port = listener(out)
    except (BrokerConfigError, OSError) as exc:
        print(f"gate: broker revoke: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BrokerConfigError) else 1
    print(f"{name}: removed from {Path(out).resolve()}/passwd, acl and roster.json; its password file deleted")
    ok, said = reload(pid, pid_file)
    if not ok:
        print(f"gate: broker revoke: the broker was not reloaded: {said}. {name} can still connect until "
              "it is (systemctl reload mosquitto, or kill -HUP the broker's pid)", file=sys.stderr)
        return 1
    print(f"broker reloaded ({said})")
    if not password:
        print(f"gate: broker revoke: {name} had no password file here, so the refusal cannot be checked",
              file=sys.stderr)
        return 1
    end = time.monotonic() + CHECK_S
    while True:   # the broker handles the signal in its own loop: give it a moment
        no, why = refused(out, name, password, host or (addr if addr not in ("0.0.0.0", "::") else "127.0.0.1"),
                          port)
        if no or time.monotonic() >= end or "could not reach" in why:
            break
        time.sleep(0.5)
    if not no:
        print(f"gate: broker revoke: {why}: the revocation is not in force", file=sys.stderr)
        return 1
    print(f"checked: {why}; any connection it had was closed by the reload")
    return 0
