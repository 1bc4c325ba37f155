"""The house service's HTTP side: dashboard, JSON API and a live event stream.

Standard library only; everything the page needs is served from the package
(no CDN), so it works on a venue LAN with no internet. Read-only. With a
token configured, every request must carry it (?token= or a Bearer header).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("gate.house.web")
STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css",
         ".svg": "image/svg+xml"}


def serve(service, listen: str) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        server_version = "gate-house"

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.client_address[0], *args)

        def _authorised(self, q) -> bool:
            if not service.token:
                return True
            given = q.get("token", [""])[0]
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[7:]
            return hmac.compare_digest(given.encode(), service.token.encode())

        def _send(self, code, body: bytes, ctype="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if not self._authorised(q):
                return self._send(401, b'{"error": "token required"}')
            if url.path == "/api/house":
                return self._send(200, json.dumps(service.api()).encode())
            if url.path == "/api/stream":
                return self._stream()
            name = "dashboard.html" if url.path in ("/", "/index.html") else url.path.lstrip("/")
            f = (STATIC / name).resolve()
            if f.parent != STATIC.resolve() or not f.is_file():
                return self._send(404, b'{"error": "not found"}')
            return self._send(200, f.read_bytes(), TYPES.get(f.suffix, "application/octet-stream"))

        def _stream(self):
            """Server-sent events: the whole house state whenever it changes (at most 4/s)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            q: "queue.Queue" = queue.Queue(maxsize=1)
            service.listeners.append(q)
            try:
                self.wfile.write(b"retry: 1000\n")
                self._event()
                while not service.stop.is_set():
                    try:
                        q.get(timeout=10)
                        self._event()
                    except queue.Empty:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                service.listeners.remove(q)

        def _event(self):
            self.wfile.write(b"data: " + json.dumps(service.api()).encode() + b"\n\n")
            self.wfile.flush()

    httpd = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd
