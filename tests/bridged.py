"""A venue with three brokers, configured by the project's own `gate broker config`: a core (house, box
office) and two entrances bridged to it, each Mosquitto running exactly the gate.conf written for it.

Entrance B's bridge reaches the core through a `LinkCut`, a TCP forwarder that can cut the link the way
a failed switch or cable does for the bridge: established connections are ended and new ones refused
(nothing listens), while both brokers and everything connected to them stay up. It never accepts a
connection only to close it: Mosquitto 2.0.11's TLS bridge spins at full CPU on that (upstream #2594).

Used by tests/test_bridges.py and bench/bench_bridges.py.
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gate.bus import bridgeconf, brokerconf
from gate.bus.broker import PrivateBroker

VENUE = "hall"


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up): the cut link is listened on again after
    20 s, and a port from the ephemeral range could meanwhile be taken by any outgoing connection."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class ConfBroker(PrivateBroker):
    """Mosquitto running a generated configuration directory as it is, plus only where to keep its data."""

    def __init__(self, workdir, conf_dir, port: int):
        super().__init__(workdir, port=port)
        lines = ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1",
                 f"log_dest file {self.dir}/mosquitto.log", f"include_dir {conf_dir}"]
        if os.geteuid() == 0:
            lines.append("user root")   # otherwise it drops to nobody and cannot write its data dir
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def log(self) -> str:
        try:
            return (self.dir / "mosquitto.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def bridge_connects(self, name: str) -> int:
        """How often the bridge `name` has connected to this (the core) broker."""
        return len(re.findall(rf"New bridge connected from \S+ as {re.escape(name)} ", self.log()))


class LinkCut:
    """A TCP forwarder on 127.0.0.1:port to 127.0.0.1:target that can be cut and healed."""

    def __init__(self, target: int, port: int = 0):
        self.target, self.port = target, port or free_port()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def heal(self) -> "LinkCut":
        """Listen again on the same port: the bridge's next attempt gets through."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        self.accepting = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self.accepting.start()
        return self

    def cut(self) -> None:
        """End what is connected and stop listening: connections are refused until heal()."""
        with self.lock:
            s, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        if s is not None:
            # shutdown, not only close: a thread blocked in accept() keeps a merely closed listener listening
            # (and would accept the bridge's next attempt only to close it, which makes Mosquitto spin).
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            self.accepting.join(5)
        for c in conns:   # both ends see the link go at once; the pumps blocked in recv() wake and end
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                down, _ = s.accept()
            except OSError:
                return   # cut
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            with self.lock:
                if self.listener is not s:
                    down.close()
                    up.close()
                    return
                self.conns += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Venue:
    """The three brokers, their configuration directories and the cuttable link of entrance B."""

    root: Path
    gates: dict                 # "core" / "a" / "b" -> gate ids there
    dirs: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)
    brokers: dict = field(default_factory=dict)
    cut_b: LinkCut | None = None

    def mqtt(self, where: str, user: str, keepalive: int = 5) -> str:
        """The [mqtt] section for `user` on the broker `where` (core, a, b): TLS, its own password."""
        d = self.dirs[where]
        return (f'[mqtt]\nhost = "localhost"\nport = {self.ports[where]}\ntls = true\n'
                f'ca_file = "{d / "ca.crt"}"\nusername = "{user}"\n'
                f'password_file = "{d / "users" / (user + ".password")}"\nkeepalive = {keepalive}\n')

    def password(self, where: str, user: str) -> str:
        return (self.dirs[where] / "users" / f"{user}.password").read_text().strip()

    def start(self) -> "Venue":
        self.brokers["core"] = ConfBroker(self.root / "data-core", self.dirs["core"], self.ports["core"]).start()
        self.cut_b = LinkCut(self.ports["core"], self.ports["cut_b"]).heal()
        for w in ("a", "b"):
            self.brokers[w] = ConfBroker(self.root / f"data-{w}", self.dirs[w], self.ports[w]).start()
        return self

    def wait_bridged(self, timeout: float = 20.0, at_least: dict | None = None) -> None:
        """Until both bridges are connected to the core (at least `at_least[name]` times in all)."""
        want = at_least or {"entrance-a": 1, "entrance-b": 1}
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            core = self.brokers["core"]
            if all(core.bridge_connects(n) >= k for n, k in want.items()):
                return
            time.sleep(0.05)
        raise AssertionError(f"bridges not connected to the core: {want}")

    def stop(self) -> None:
        if self.cut_b:
            self.cut_b.cut()
        for b in self.brokers.values():
            b.stop()


def configure_venue(root, gates_a: list[str], gates_b: list[str], core_gates: list[str] = ()) -> Venue:
    """Write the three directories as an operator would: the core, entrance A with the core's directory at
    hand (--core-dir), entrance B in two steps (the core's side, then B's from copies of the core's CA and
    B's bridge password), its bridge addressed through the LinkCut's port."""
    root = Path(root)
    v = Venue(root, {"core": list(core_gates), "a": list(gates_a), "b": list(gates_b)})
    v.dirs = {w: root / f"conf-{w}" for w in ("core", "a", "b")}
    v.ports = {w: free_port() for w in ("core", "a", "b", "cut_b")}
    hosts = ["localhost", "127.0.0.1"]
    brokerconf.write_config(v.dirs["core"], VENUE, list(core_gates), ["dashboard"], hosts, v.ports["core"],
                            "127.0.0.1")
    bridgeconf.configure(v.dirs["a"], VENUE, "entrance-a", gates_a, hosts, f"localhost:{v.ports['core']}",
                         core_dir=v.dirs["core"], port=v.ports["a"], bind="127.0.0.1")
    made = bridgeconf.add_bridge(v.dirs["core"], VENUE, "entrance-b", gates_b)
    bridgeconf.configure(v.dirs["b"], VENUE, "entrance-b", gates_b, hosts, f"localhost:{v.ports['cut_b']}",
                         core_ca=made["ca"], password_file=made["password_file"], port=v.ports["b"],
                         bind="127.0.0.1")
    return v


def start_venue(root, gates_a, gates_b, core_gates=()) -> Venue:
    return configure_venue(root, gates_a, gates_b, core_gates).start()
