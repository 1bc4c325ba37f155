"""A hostile stand-in for pretix: the house must fail loud and safe against it.

Standard library only (http.server, a thread per request) on a free port. By default
it answers the few calls the house makes the way pretix does (tests/pretix_server.py
runs the real pretix for the happy paths): an event with its keys, orders with
`last_modified`, a check-in list's positions 50 a page, revoked and blocked secrets,
and redeem / annul / failed check-in calls that record each nonce once. A test then
scripts it to misbehave, per call:

    srv.on("GET", "/positions/", Answer(200, {"count": 0, "next": None, "results": []}))   # empty
    srv.on("POST", "/redeem/", Answer(301, b"", {"Location": "https://elsewhere/"}), times=3)
    srv.on("GET", "/positions/", Answer(200, deep_json(100_000)))                          # deep
    srv.on("GET", "/positions/", Answer(200, {...}, trickle=(10, 0.5)))                    # slow
    srv.slow("GET", "/positions/", 0.4)                                                    # each page late
    srv.date_shift_s = 10 * 365 * 86400                                                   # time-shifted

Every request is kept in `requests` (method, path, query, JSON body) for assertions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union
from urllib.parse import parse_qs, urlsplit

PAGE = 50


@dataclass
class Answer:
    status: int = 200
    body: Union[bytes, dict, list, None] = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0                 # before anything is sent
    trickle: Optional[tuple] = None    # (bytes, seconds): the body a few bytes at a time


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class HostilePretix:
    def __init__(self, organizer: str = "org", event: str = "gala", list_id: int = 7):
        self.organizer, self.event, self.list_id = organizer, event, list_id
        self.positions: list[dict] = []
        self.orders: dict[str, dict] = {}
        self.revoked: list[str] = []
        self.blocked: list[dict] = []
        self.keys: list[str] = []
        self.nonces: dict[str, int] = {}     # nonce -> times it was recorded (must stay 1)
        self.recorded: list[dict] = []       # redeems recorded, in order
        self.requests: list[tuple] = []
        self.rules: list[list] = []          # [method, regex, answer or callable, times left]
        self.date_shift_s = 0.0
        self.data_shift_s = 0.0              # pretix's own clock, as its data shows it
        self.lock = threading.RLock()
        self._next_id = 1000
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def date_time_string(self, timestamp=None):
                return formatdate((timestamp or time.time()) + server.date_shift_s, usegmt=True)

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hostile-pretix", daemon=True)

    # -- running -------------------------------------------------------------------------
    def start(self) -> "HostilePretix":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- data ------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.data_shift_s

    def add_order(self, n: int = 1, status: str = "p", secret: Optional[Callable[[int], str]] = None,
                  **extra) -> str:
        """A paid order with `n` positions; returns its code."""
        with self.lock:
            code = f"O{self._next_id:05d}"
            self._next_id += 1
            self.orders[code] = {"code": code, "status": status, "last_modified": iso(self.now())}
            for i in range(1, n + 1):
                pid = self._next_id
                self._next_id += 1
                self.positions.append({
                    "id": pid, "order": code, "positionid": i, "item": 1, "subevent": None,
                    "secret": secret(pid) if secret else f"secret{pid:08d}xyzsecret", "attendee_name": f"Guest {pid}",
                    "attendee_email": None, "seat": None, "checkins": [], "blocked": False, "valid_from": None,
                    "valid_until": None, "order__status": status, "order__valid_if_pending": False,
                    "require_attention": False, **extra})
        return code

    def add_positions(self, n: int) -> list[str]:
        return [self.add_order(1) for _ in range(n)]

    def set_order_status(self, code: str, status: str) -> None:
        with self.lock:
            self.orders[code].update(status=status, last_modified=iso(self.now()))
            for p in self.positions:
                if p["order"] == code:
                    p["order__status"] = status

    def secrets(self) -> list[str]:
        return [p["secret"] for p in self.positions]

    def ticket_ids(self) -> list[str]:
        return [f"{p['order']}-{p['positionid']}" for p in self.positions]

    # -- scripting ------------------------------------------------------------------------
    def on(self, method: str, pattern: str, answer, times: Optional[int] = None) -> None:
        """Answer requests whose path matches `pattern` (a regex) with `answer` (an Answer, or a
        callable taking (path, query, body) and returning an Answer or None to fall through)."""
        with self.lock:
            self.rules.insert(0, [method, re.compile(pattern), answer, times])

    def slow(self, method: str, pattern: str, seconds: float) -> None:
        """Answer requests whose path matches `pattern` as usual, each only after `seconds` (a large
        event's pages over a slow link)."""
        def later(path, query, body):
            answer = self._default(method, path, query, body)
            answer.delay = seconds
            return answer
        self.on(method, pattern, later)

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def count(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern)
        with self.lock:
            return sum(1 for m, p, _, _ in self.requests if m == method and rx.search(p))

    # -- serving ---------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        u = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self.lock:
            self.requests.append((method, u.path, query, body))
            answer = None
            for rule in self.rules:
                m, rx, what, times = rule
                if m == method and rx.search(u.path) and times != 0:
                    got = what(u.path, query, body) if callable(what) else what
                    if got is not None:
                        if times is not None:
                            rule[3] = times - 1
                        answer = got
                        break
        if answer is None:
            answer = self._default(method, u.path, query, body)
        self._send(h, answer)

    def _send(self, h, a: Answer) -> None:
        if a.delay:
            time.sleep(a.delay)
        data = a.body if isinstance(a.body, bytes) else (b"" if a.body is None else json.dumps(a.body).encode())
        try:
            h.send_response(a.status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **a.headers}
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            if a.trickle:
                n, every = a.trickle
                for i in range(0, len(data), n):
                    h.wfile.write(data[i:i + n])
                    h.wfile.flush()
                    time.sleep(every)
            else:
                h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _paged(self, items: list, query: dict) -> Answer:
        page = int(query.get("page", "1"))
        chunk = items[(page - 1) * PAGE: page * PAGE]
        more = page * PAGE < len(items)
        return Answer(200, {"count": len(items), "next": f"{self.url}/next?page={page + 1}" if more else None,
                            "previous": None, "results": chunk})

    def _default(self, method: str, path: str, query: dict, body) -> Answer:
        base = f"/api/v1/organizers/{self.organizer}"
        ev = f"{base}/events/{self.event}"
        with self.lock:
            if method == "GET" and path == ev + "/":
                return Answer(200, {"slug": self.event, "valid_keys": {"pretix_sig1": self.keys}})
            if method == "GET" and path == ev + "/orders/":
                orders = list(self.orders.values())
                if "modified_since" in query:
                    since = _ts(query["modified_since"])
                    orders = [o for o in orders if _ts(o["last_modified"]) >= since]
                orders.sort(key=lambda o: o["last_modified"], reverse=query.get("ordering", "").startswith("-"))
                return self._paged(orders, query)
            if method == "GET" and path == ev + f"/checkinlists/{self.list_id}/positions/":
                items = [p for p in self.positions if "order" not in query or p["order"] == query["order"]]
                return self._paged(items, query)
            if method == "GET" and path == ev + "/revokedsecrets/":
                return self._paged([{"id": i, "secret": s} for i, s in enumerate(self.revoked)], query)
            if method == "GET" and path == ev + "/blockedsecrets/":
                return self._paged(self.blocked, query)
            if method == "POST" and path == base + "/checkinrpc/redeem/":
                secret, nonce = (body or {}).get("secret"), (body or {}).get("nonce")
                if secret not in {p["secret"] for p in self.positions}:
                    return Answer(404, {"status": "error", "reason": "invalid", "detail": "Not found."})
                if nonce not in self.nonces:
                    self.nonces[nonce] = 1
                    self.recorded.append(body)
                return Answer(201, {"status": "ok"})
            if method == "POST" and path == base + "/checkinrpc/annul/":
                return Answer(200, {"status": "ok"})
            if method == "POST" and path.startswith(ev + "/checkinlists/") and path.endswith("/failed_checkins/"):
                return Answer(201, {"id": 1})
        return Answer(404, {"detail": "Not found."})


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass   # the house hanging up on a slow or huge answer is the point, not news


def _ts(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
