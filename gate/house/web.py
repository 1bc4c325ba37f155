"""The house service's HTTP side: dashboard, JSON API and a live event stream.

One asyncio loop on one thread serves every connection, so an idle or slow
socket costs a few kilobytes, not a thread: a thread per connection ran out of
address space on a 32-bit Pi after about 160 idle sockets and then nobody got
the page. The server holds under a crowd or an attack because:
- a request head must arrive complete, within HEAD_TIMEOUT and HEAD_LIMIT bytes;
- at most MAX_CONNECTIONS sockets are open: beyond it the oldest socket still
  waiting for its request is closed to make room, and when every socket is busy
  the newcomer gets a 503 saying so;
- at most MAX_STREAMS live dashboards: the next one gets a 503 saying so; a
  stream whose reader falls behind by MAX_BUFFERED bytes is closed;
- the token is checked before any work is done for a request;
- a client that goes away is simply forgotten (no traceback).
The house state is serialised once per change and the same bytes go to every
live dashboard. Standard library only; everything the page needs is served
from the package (no CDN). Read-only. With a token configured, every request
must carry it (?token= or a Bearer header).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from gate.config import parse_listen
from gate.core.supervisor import Supervised, describe

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css",
         ".svg": "image/svg+xml"}

MAX_CONNECTIONS = 2000
MAX_STREAMS = 256
HEAD_TIMEOUT = 10.0
HEAD_LIMIT = 8192
WRITE_TIMEOUT = 10.0
KEEPALIVE_S = 10.0
MAX_BUFFERED = 256 * 1024
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _raise_fd_limit(want: int) -> int:
    """Room for the sockets we promise to hold (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want and (hard == resource.RLIM_INFINITY or hard > soft):
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return soft


def response(code: int, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {code} {REASONS.get(code, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
            f"Server: gate-house\r\n{extra}\r\n").encode() + body


def _error(code: int, text: str) -> bytes:
    return response(code, json.dumps({"error": text}).encode())


class Dashboard(Supervised):   # pretix-safe: restarted with backoff, shown in /api/house `workers`
    """The HTTP server on its own worker thread. It reads the house only through `snapshot()`
    (the `/api/house` object, gate/house/query.py); `notify()` (any thread) tells live
    dashboards the house changed. `token` empty: no token asked for."""

    join_timeout = 5.0

    def __init__(self, snapshot: Callable[[], dict], listen: str, token: str = ""):
        super().__init__("http")
        self.snapshot = snapshot
        self.token = token
        self.host, self.port = parse_listen(listen)
        self.loop = asyncio.new_event_loop()
        self.waiting: "OrderedDict[int, asyncio.StreamWriter]" = OrderedDict()   # oldest first
        self.streams: set = set()
        self.open = 0
        self.refused = {"busy": 0, "streams": 0, "slow": 0, "evicted": 0, "timeout": 0}
        self.max_connections = min(MAX_CONNECTIONS, _raise_fd_limit(MAX_CONNECTIONS + 256) - 128)
        # the page and what it loads (static/vendor/: the charting library), by path under static/
        self.static = {p.relative_to(STATIC).as_posix(): p.read_bytes() for p in STATIC.rglob("*") if p.is_file()}
        self._server: Optional[asyncio.AbstractServer] = None
        self._pending = False
        self._ready = threading.Event()
        self._error: Optional[OSError] = None
        self._state_error = ""

    # -- lifecycle (caller's thread) ------------------------------------------
    def start(self) -> None:
        """Listen and serve; raises OSError when it cannot listen."""
        super().start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def run(self) -> None:
        if self.loop.is_closed():    # a restart after the loop failed: a fresh loop and server
            self.loop, self._server = asyncio.new_event_loop(), None
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        if self._server is None:
            try:
                self._server = self.loop.run_until_complete(asyncio.start_server(
                    self._client, self.host or None, self.port, limit=HEAD_LIMIT, backlog=512))
            except OSError as exc:
                self._error = exc
                self.stopping.set()    # cannot listen: start() says so; nothing to restart
                self._ready.set()
                return
        self._ready.set()
        try:
            self.loop.run_forever()
        except BaseException:
            self._server.close()       # free the port for the restart
            self.loop.close()
            raise

    def close(self) -> None:
        """Drop every connection, stop the loop and its thread; safe to call twice, or unstarted."""
        if self._server is not None and not self.loop.is_closed():
            self._shutdown(self._server)
        if not self.alive and not self.loop.is_closed():
            self.loop.close()

    def _shutdown(self, server: asyncio.AbstractServer) -> None:
        async def stop():
            server.close()
            for w in list(self.streams) + list(self.waiting.values()):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:
            log.debug("dashboard server stop", exc_info=True)
        self.stop()

    def wake(self) -> None:
        """Stopping: end the loop (run_forever returns, and with it the thread)."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass   # loop closed already

    def notify(self) -> None:
        """The house changed: one fresh state for every live dashboard (coalesced)."""
        if not self._pending and not self.loop.is_closed():
            self._pending = True
            try:
                self.loop.call_soon_threadsafe(self._broadcast)
            except RuntimeError:
                pass   # loop closed meanwhile

    # -- the loop ---------------------------------------------------------------
    def _loop_error(self, loop, context) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, TimeoutError, asyncio.CancelledError)):
            return   # a client went away: not news
        log.warning("dashboard server: %s", context.get("message"), exc_info=exc)

    def _state(self) -> bytes:
        try:
            body = json.dumps(self.snapshot()).encode()
            self._state_error = ""
            return body
        except Exception as exc:   # say so on the page, log it once, keep serving
            what = describe(exc)
            if what != self._state_error:
                self._state_error = what
                log.error("the house could not report its state", exc_info=exc)
            return json.dumps({"error": f"the house could not report its state: {what}"}).encode()

    def _broadcast(self) -> None:
        self._pending = False
        if not self.streams:
            return
        body = b"data: " + self._state() + b"\n\n"
        for w in list(self.streams):
            self._stream_write(w, body)

    def _stream_write(self, w, data: bytes) -> None:
        if w.transport.is_closing():
            self.streams.discard(w)
        elif w.transport.get_write_buffer_size() > MAX_BUFFERED:
            self.refused["slow"] += 1
            self.streams.discard(w)
            w.transport.abort()   # it stopped reading: it reconnects and gets a fresh state
        else:
            w.write(data)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections and not self._evict_waiting():
            self.refused["busy"] += 1
            writer.write(_error(503, "the dashboard server is at its connection limit; try again shortly"))
            writer.transport.close()
            return
        self.open += 1
        key = id(writer)
        self.waiting[key] = writer
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except asyncio.LimitOverrunError:
                return await self._finish(writer, _error(431, "request head too large"))
            except asyncio.TimeoutError:
                self.refused["timeout"] += 1
                return
            finally:
                self.waiting.pop(key, None)
            await self._request(head, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass   # the client went away, or was made room for
        finally:
            self.open -= 1
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()   # what it did not read in WRITE_TIMEOUT is not waited for
            else:
                writer.close()

    def _evict_waiting(self) -> bool:
        """Make room by closing the oldest connection that never sent its request."""
        if not self.waiting:
            return False
        _, w = self.waiting.popitem(last=False)
        self.refused["evicted"] += 1
        w.transport.abort()
        return True

    async def _finish(self, writer, data: bytes) -> None:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _request(self, head: bytes, writer) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return await self._finish(writer, _error(400, "bad request line"))
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return await self._finish(writer, _error(405, "read-only"))
        url = urlsplit(target)
        if not self._authorised(url.query, lines[1:]):
            return await self._finish(writer, _error(401, "token required"))
        path = unquote(url.path)
        if path == "/api/house":
            body = self._state()
        elif path == "/api/stream":
            return await self._stream(writer)
        else:
            name = "dashboard.html" if path in ("/", "/index.html") else path.lstrip("/")
            found = self.static.get(name)   # only the files read at start: no path reaches the disk
            if found is None:
                return await self._finish(writer, _error(404, "not found"))
            body = found
            ctype = TYPES.get(Path(name).suffix, "application/octet-stream")
            data = response(200, body, ctype)
            return await self._finish(writer, data if method == "GET" else data[: len(data) - len(body)])
        data = response(200, body)
        await self._finish(writer, data if method == "GET" else data[: len(data) - len(body)])

    def _authorised(self, query: str, header_lines) -> bool:
        token = self.token
        if not token:
            return True
        given = parse_qs(query).get("token", [""])[0]
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization" and value.strip().startswith("Bearer "):
                given = value.strip()[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    async def _stream(self, writer) -> None:
        """Server-sent events: the whole house state whenever it changes (at most 4/s)."""
        if len(self.streams) >= MAX_STREAMS:
            self.refused["streams"] += 1
            return await self._finish(writer, _error(503, f"{MAX_STREAMS} live dashboards are open already; "
                                                          "close one, or use /api/house"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                     b"Connection: close\r\nServer: gate-house\r\n\r\nretry: 1000\n"
                     + b"data: " + self._state() + b"\n\n")
        self.streams.add(writer)
        try:
            while not writer.transport.is_closing():
                await asyncio.sleep(KEEPALIVE_S)
                self._stream_write(writer, b": keepalive\n\n")
        finally:
            self.streams.discard(writer)
