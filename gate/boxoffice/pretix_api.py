"""pretix's REST API, the few calls the house needs, over the standard library's http.client.

pretix's answers are input from outside like any other, and so is whatever stands
between us and pretix (proxies, captive portals, a server that is being upgraded):
- every answer is read against a deadline (a server that trickles bytes is cut off),
  up to MAX_RESPONSE bytes, and must be JSON no deeper than MAX_DEPTH;
- a `next` link is never followed anywhere (we page with our own `page=` parameter), and
  a paged list is bounded by value: results per page, pages, and items in all;
- a redirect is never followed: it is reported (it usually means `pretix.url` should
  say https://, or name the host the proxy sends us to);
- the `Date` header is never trusted for anything.

Every failure is a `PretixError` whose `kind` says what it means for the caller:
`unreachable` and `server` may pass by themselves (try again later); `auth` and
`config` need a person (wrong token, wrong URL, a redirect); `answer` is an answer we
refuse to read (too big, too deep, too slow, not JSON, not the expected shape);
`bounds` is a list larger than the house accepts.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Iterator, Optional

MAX_RESPONSE = 4 * 1024 * 1024   # one page of 50 positions is ~50-100 KB; this is generous
MAX_DEPTH = 24                   # a position with its check-ins and answers is about 6 deep
MAX_PAGE_RESULTS = 1000          # pretix sends 50 a page
MAX_PAGES = 10_000               # a hard stop whatever `count` says
MAX_ITEMS = 250_000              # per listing: the most tickets a gate's list holds (lists.MAX_TICKETS)
RETRY_STATUS = {408, 409, 423, 425, 429, 500, 502, 503, 504}
RETRYABLE = ("unreachable", "server")


class PretixError(Exception):
    """`kind`: unreachable | server | auth | config | answer | bounds (see the module's docstring)."""

    def __init__(self, message: str, status: int = 0, kind: str = "server", body=None, retry_after: float = 0.0):
        super().__init__(message)
        self.status, self.kind, self.body, self.retry_after = status, kind, body, retry_after

    @property
    def retry(self) -> bool:
        """True when trying again later, unchanged, may succeed."""
        return self.kind in RETRYABLE

    @property
    def needs_person(self) -> bool:
        return self.kind in ("auth", "config")


def token_problem(token: str) -> str:
    """Why `token` cannot be sent as pretix's Authorization header, or '' when it can.

    HTTP headers carry Latin-1 at most, and a token is printable ASCII: anything else
    (a non-breaking space or a curly quote pasted from a web page, a stray newline
    inside) would fail later as a confusing connection error."""
    t = token.strip()
    for prefix in ("Token", "Device"):
        if t == prefix or t.startswith(prefix + " "):
            t = t[len(prefix):].strip()
            break
    if not t:
        return "the pretix token file holds no token"
    if len(t) > 512:
        return "the pretix token is longer than 512 characters: is it the right file?"
    bad = sorted({c for c in t if not 0x21 <= ord(c) <= 0x7E})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        return f"the pretix token holds characters an HTTP header cannot carry ({shown}): copy it again as plain text"
    return ""


def iso(ms: int) -> str:
    """Unix ms as the ISO 8601 UTC time pretix reads (millisecond precision)."""
    s, rest = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{rest:03d}Z"


def parse_time(value) -> Optional[int]:
    """pretix's ISO 8601 times to unix ms; None for null; ValueError for anything else."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not a time")
    from datetime import datetime
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time without zone")
    return int(round(dt.timestamp() * 1000))


def depth_within(obj, limit: int) -> bool:
    """True when `obj` (parsed JSON) nests no deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return True


def _status_error(status: int, method: str, path: str, location: str, body, retry_after: str) -> PretixError:
    """The error for an HTTP status the caller does not read as an answer."""
    if 300 <= status < 400:
        where = location[:200] if location else "(no Location given)"
        return PretixError(f"{method} {path}: pretix.url redirects (HTTP {status}) to {where}: set pretix.url to "
                           "the address pretix really answers on (https://?)", status, "config")
    if status in (401, 403):
        return PretixError(f"pretix refused the token (HTTP {status}): check pretix.token_file and the token's "
                           "rights (check-in and order read)", status, "auth", body)
    if status in RETRY_STATUS or status >= 500:
        wait = float(retry_after) if retry_after.isdigit() else 0.0
        return PretixError(f"pretix answered HTTP {status}", status, "server", body, min(wait, 3600.0))
    return PretixError(f"{method} {path}: HTTP {status}: check pretix.url, organizer, event and checkin_list",
                       status, "config", body)


class PretixClient:
    """One organizer's API at one pretix; keeps a connection open when the server allows. One thread each."""

    def __init__(self, url: str, organizer: str, token: str, timeout: float = 15.0,
                 max_response: int = MAX_RESPONSE):
        u = urllib.parse.urlsplit(url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        problem = token_problem(token)
        if problem:
            raise ValueError(problem)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base = u.path + f"/api/v1/organizers/{urllib.parse.quote(organizer)}"
        token = token.strip()
        self.auth = token if token.startswith(("Token ", "Device ")) else "Token " + token
        self.timeout, self.max_response = timeout, max_response
        self.deadline_s = 2 * timeout   # a whole answer, however it trickles in
        self.conn: Optional[http.client.HTTPConnection] = None
        self.watchdog = _Watchdog()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.scheme == "https":
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=ssl.create_default_context())
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def _exchange(self, method: str, url: str, path: str, data, headers) -> tuple:
        """(response, raw body) of one request, within the deadline and the size cap."""
        conn = self._connect()
        fired = self.watchdog.arm(conn, time.monotonic() + self.deadline_s)
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            chunks, size = [], 0
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    resp.read()   # marks the response done, so the connection can carry the next request
                    break
                size += len(chunk)
                if size > self.max_response:
                    self.close()
                    raise PretixError(f"{method} {path}: answer larger than {self.max_response:,} bytes",
                                      resp.status, "answer")
                chunks.append(chunk)
            if fired:
                raise OSError("cut off")
            return resp, b"".join(chunks)
        except (OSError, http.client.HTTPException) as exc:
            if fired:
                self.close()
                raise PretixError(f"{method} {path}: no complete answer within {self.deadline_s:g} s", 0,
                                  "unreachable") from None
            raise exc
        finally:
            self.watchdog.disarm()

    def request(self, method: str, path: str, body=None, params: Optional[dict] = None):
        """(status, parsed JSON) of a 2xx, 400 or 404 answer (the ones that can be pretix's word on a
        ticket); raises PretixError for everything else and for answers we refuse to read."""
        url = self.base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Authorization": self.auth, "Accept": "application/json", "User-Agent": "gate-house"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                resp, raw = self._exchange(method, url, path, data, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 0:
                    continue   # a kept-alive connection the server had already closed
                raise PretixError(f"connection lost: {exc}", 0, "unreachable") from None
            except (socket.timeout, TimeoutError):
                self.close()
                raise PretixError(f"no answer within {self.timeout:g} s", 0, "unreachable") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise PretixError(f"cannot reach pretix: {exc}", 0, "unreachable") from None
            break
        if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
            self.close()
        status = resp.status
        parsed = self._parse(raw, status, method, path)
        if not (200 <= status < 300 or status in (400, 404)):
            raise _status_error(status, method, path, resp.getheader("Location", "") or "", parsed,
                                resp.getheader("Retry-After", "") or "")
        if parsed is _NOT_JSON:
            raise PretixError(f"{method} {path}: answer is not JSON (HTTP {status}): is pretix.url pretix itself?",
                              status, "config" if status == 404 else "answer")
        return status, parsed

    def _parse(self, raw: bytes, status: int, method: str, path: str):
        if not raw:
            return None
        try:
            parsed = json.loads(raw)
        except RecursionError:
            raise PretixError(f"{method} {path}: answer nested deeper than {MAX_DEPTH} levels", status,
                              "answer") from None
        except ValueError:
            return _NOT_JSON
        if isinstance(parsed, (dict, list)) and not depth_within(parsed, MAX_DEPTH):
            raise PretixError(f"{method} {path}: answer nested deeper than {MAX_DEPTH} levels", status, "answer")
        return parsed

    def get(self, path: str, params: Optional[dict] = None) -> dict:
        status, body = self.request("GET", path, params=params)
        if status == 404:
            raise PretixError(f"GET {path}: not found (HTTP 404): check pretix.organizer, event and checkin_list",
                              status, "config", body)
        if status != 200 or not isinstance(body, dict):
            raise PretixError(f"GET {path}: HTTP {status}, not the object pretix sends", status,
                              "config" if status == 400 else "answer", body)
        return body

    def page_lists(self, path: str, params: Optional[dict] = None, on_page=None,
                   max_items: int = MAX_ITEMS) -> Iterator[list]:
        """Each page's results as sent (the caller checks each), page by page: our own page numbers, never its `next` URL.

        Bounded by value: at most MAX_PAGE_RESULTS a page, `max_items` in all (by pretix's `count`
        and by what actually arrives), and no more pages than `count` needs (plus one: a list can
        grow while we read it), nor MAX_PAGES whatever it says."""
        params = dict(params or {})
        seen, limit = 0, MAX_PAGES
        for page in range(1, MAX_PAGES + 1):
            if page > limit:
                raise PretixError(f"GET {path}: still more pages after {limit}, beyond what its own count of "
                                  "items needs", 0, "bounds")
            body = self.get(path, {**params, "page": page})
            results, count = body.get("results"), body.get("count")
            if not isinstance(results, list) or type(count) is not int or count < 0:
                raise PretixError(f"GET {path}: not a paged list", 0, "answer")
            if len(results) > MAX_PAGE_RESULTS:
                raise PretixError(f"GET {path}: {len(results):,} results on one page (at most "
                                  f"{MAX_PAGE_RESULTS:,} accepted)", 0, "bounds")
            if count > max_items:
                raise PretixError(f"GET {path}: pretix says {count:,} items; the house takes at most "
                                  f"{max_items:,}", 0, "bounds")
            seen += len(results)
            if seen > max_items:
                raise PretixError(f"GET {path}: more than {max_items:,} items sent", 0, "bounds")
            if page == 1 and results:
                limit = min(MAX_PAGES, -(-count // len(results)) + 1)
            if on_page:
                on_page(page, len(results), count)
            yield results
            if not body.get("next") or not results:
                return
        raise PretixError(f"GET {path}: more than {MAX_PAGES} pages", 0, "bounds")

    def pages(self, path: str, params: Optional[dict] = None, on_page=None,
              max_items: int = MAX_ITEMS) -> Iterator[dict]:
        """Every result of a paged list, one at a time (see `page_lists`)."""
        for page in self.page_lists(path, params, on_page, max_items):
            yield from (r for r in page if isinstance(r, dict))

    # -- the scanner calls ----------------------------------------------------------
    def redeem(self, secret: str, list_id: int, nonce: str, ts_ms: int, exit: bool = False) -> tuple[int, dict]:
        """Record a scan that already happened at a door (force: the gate decided offline)."""
        body = {"secret": secret, "lists": [list_id], "nonce": nonce, "datetime": iso(ts_ms), "force": True,
                "type": "exit" if exit else "entry", "questions_supported": False, "source_type": "barcode"}
        status, parsed = self.request("POST", "/checkinrpc/redeem/", body)
        return status, parsed if isinstance(parsed, dict) else {}

    def annul(self, list_id: int, nonce: str, ts_ms: int, why: str) -> tuple[int, dict]:
        body = {"lists": [list_id], "nonce": nonce, "datetime": iso(ts_ms), "error_explanation": why[:200]}
        status, parsed = self.request("POST", "/checkinrpc/annul/", body)
        return status, parsed if isinstance(parsed, dict) else {}

    def failed_checkin(self, event: str, list_id: int, raw: str, reason: str, nonce: str, ts_ms: int,
                       exit: bool = False, position: Optional[int] = None, why: str = "") -> tuple[int, dict]:
        body: dict = {"error_reason": reason, "raw_barcode": raw[:500], "nonce": nonce, "datetime": iso(ts_ms),
                "type": "exit" if exit else "entry", "error_explanation": why[:200]}
        if position:
            body["position"] = position
        status, parsed = self.request("POST", f"/events/{urllib.parse.quote(event)}/checkinlists/{list_id}"
                                               "/failed_checkins/", body)
        return status, parsed if isinstance(parsed, dict) else {}

    def list_status(self, event: str, list_id: int) -> dict:
        return self.get(f"/events/{urllib.parse.quote(event)}/checkinlists/{list_id}/status/")


class _Watchdog:
    """Cuts an exchange off at its deadline: the socket is shut down, so a read blocked on a server
    that trickles bytes returns at once. One thread per client, started when first armed and ended
    after a minute with nothing to watch (a thread per request cost a thread start each on a busy Pi)."""

    IDLE_S = 60.0

    def __init__(self):
        self._cv = threading.Condition()
        self._conn = None
        self._deadline: Optional[float] = None
        self._fired: list = []
        self._thread: Optional[threading.Thread] = None

    def arm(self, conn, deadline: float) -> list:
        """Watch `conn` until `deadline`; returns a list that is non-empty once the deadline fired."""
        with self._cv:
            self._conn, self._deadline, self._fired = conn, deadline, []
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pretix-deadline", daemon=True)
                self._thread.start()
            self._cv.notify()
            return self._fired

    def disarm(self) -> None:
        with self._cv:
            self._conn = self._deadline = None

    def _run(self) -> None:
        with self._cv:
            idle_since = time.monotonic()
            while True:
                if self._deadline is None:
                    if time.monotonic() - idle_since > self.IDLE_S:
                        self._thread = None
                        return
                    self._cv.wait(self.IDLE_S)
                    continue
                idle_since = time.monotonic()
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cv.wait(left)
                    continue
                self._fired.append(True)
                sock, self._deadline = getattr(self._conn, "sock", None), None
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


class _NotJson:
    def __repr__(self) -> str:
        return "<not JSON>"


_NOT_JSON = _NotJson()
