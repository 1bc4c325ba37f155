"""The house dashboard under a crowd: 1,000 idle sockets and 200 live dashboards, with a
32-bit Pi's address space (2.5 GB RLIMIT_AS), for two servers side by side:

- threads: the standard library's ThreadingHTTPServer, a thread per connection (the
  anchor: what the house used before);
- asyncio: gate.house.web, one event loop for every connection (what it uses now).

For each: how many of the crowd's sockets got served, the server's RSS and threads with
the crowd connected, and the time a fresh client waits for / and /api/house.
Run: python bench/bench_dashboard.py
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ADDRESS_SPACE = int(2.5 * 1024 ** 3)
IDLE, STREAMS = 1000, 200


def serve(kind: str, cfg_path: str, port_file: str) -> None:
    """The child: a real house service; `threads` adds the stdlib server on a port of its own."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gate.config import load
    from gate.house.build import build_house
    svc = build_house(load(cfg_path))
    svc.start()
    port = int(svc.cfg.house.listen.rsplit(":", 1)[1])
    if kind == "threads":
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/api/stream":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b"data: " + json.dumps(svc.api()).encode() + b"\n\n")
                    self.wfile.flush()
                    while not svc.intake.stopping.wait(10):
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                    return
                body = json.dumps(svc.api()).encode() if self.path == "/api/house" else \
                    (Path(__file__).resolve().parent.parent / "gate/house/static/dashboard.html").read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]
    Path(port_file).write_text(str(port))
    threading.Event().wait()


def proc_status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "Threads"):
            out[k] = int(v.split()[0])
    return out


def fetch(port, path):
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            r.read()
        return time.monotonic() - t0
    except Exception as exc:
        return f"failed ({type(exc).__name__})"


def run(kind: str, workdir: Path, broker_port: int) -> dict:
    from gate.bus.broker import free_port
    cfg = workdir / f"{kind}.toml"
    cfg.write_text(f'[house]\nvenue = "hall"\nlisten = "127.0.0.1:{free_port()}"\nclient_id = "house-{kind}"\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n[storage]\ndir = "{workdir / kind}"\n')
    port_file = workdir / f"{kind}.port"
    p = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(cfg), str(port_file)],
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE)),
                         stderr=subprocess.DEVNULL)
    end = time.monotonic() + 20
    while not port_file.exists() and time.monotonic() < end:
        time.sleep(0.05)
    port = int(port_file.read_text())
    base = proc_status(p.pid)
    socks, served = [], 0
    try:
        for _ in range(IDLE):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        streams = []
        for _ in range(STREAMS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            streams.append(s)
        socks += streams
        for s in streams:
            s.settimeout(2)
            try:
                served += s.recv(64).startswith(b"HTTP/1.")
            except OSError:
                pass
        time.sleep(0.5)
        crowd = proc_status(p.pid)
        page, api = fetch(port, "/"), fetch(port, "/api/house")
    finally:
        for s in socks:
            s.close()
        p.kill()
        p.wait()
    return {"kind": kind, "streams served": f"{served}/{STREAMS}", "rss MB idle": base["VmRSS"] / 1024,
            "rss MB crowd": crowd["VmRSS"] / 1024, "threads crowd": crowd["Threads"], "page s": page, "api s": api}


def main() -> None:
    from gate.bus.broker import PrivateBroker
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with tempfile.TemporaryDirectory() as d:
        broker = PrivateBroker(Path(d) / "broker").start()
        try:
            rows = [run(kind, Path(d), broker.port) for kind in ("threads", "asyncio")]
        finally:
            broker.stop()
    print(f"house dashboard, {IDLE} idle sockets + {STREAMS} live dashboards, RLIMIT_AS 2.5 GB "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    cols = list(rows[0])
    print("  ".join(f"{c:>15}" for c in cols))
    for r in rows:
        print("  ".join(f"{(f'{v:.3f}' if isinstance(v, float) else str(v)):>15}" for v in r.values()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(*sys.argv[2:5])
    else:
        main()
