"""pretix's REST API, the few calls the house needs, over the standard library's http.client.

pretix's answers are input from outside like any other: every response is read with a
size cap and a timeout, must be JSON of the expected shape, and a `next` link is never
followed anywhere (we page with our own `page=` parameter). Errors come out as
`PretixError` with `retry` saying whether trying again later can help.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from typing import Iterator, Optional

MAX_RESPONSE = 8 * 1024 * 1024   # one page of 50 positions is ~50 KB; this is generous
MAX_PAGES = 10_000
RETRY_STATUS = {408, 409, 423, 425, 429, 500, 502, 503, 504}


class PretixError(Exception):
    def __init__(self, message: str, status: int = 0, retry: bool = True, body=None, retry_after: float = 0.0):
        super().__init__(message)
        self.status, self.retry, self.body, self.retry_after = status, retry, body, retry_after


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


class PretixClient:
    """One organizer's API at one pretix; keeps a connection open when the server allows."""

    def __init__(self, url: str, organizer: str, token: str, timeout: float = 15.0,
                 max_response: int = MAX_RESPONSE):
        u = urllib.parse.urlsplit(url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base = u.path + f"/api/v1/organizers/{urllib.parse.quote(organizer)}"
        token = token.strip()
        self.auth = token if token.startswith(("Token ", "Device ")) else "Token " + token
        self.timeout, self.max_response = timeout, max_response
        self.conn: Optional[http.client.HTTPConnection] = None
        self.server_date: Optional[float] = None   # pretix's clock, from its last Date header

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

    def request(self, method: str, path: str, body=None, params: Optional[dict] = None):
        """(status, parsed JSON) for one call; raises PretixError for transport trouble and
        for answers that are not JSON of bounded size."""
        url = self.base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Authorization": self.auth, "Accept": "application/json", "User-Agent": "gate-house"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = self._connect()
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read(self.max_response + 1)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 0:
                    continue   # a kept-alive connection the server had already closed
                raise PretixError(f"connection lost: {exc}") from None
            except (socket.timeout, TimeoutError):
                self.close()
                raise PretixError(f"no answer within {self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise PretixError(f"cannot reach pretix: {exc}") from None
            break
        if len(raw) > self.max_response:
            self.close()
            raise PretixError(f"answer larger than {self.max_response} bytes", resp.status)
        if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
            self.close()
        date = resp.getheader("Date")
        if date:
            try:
                self.server_date = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                pass
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
            if resp.status < 400:
                raise PretixError(f"answer is not JSON (HTTP {resp.status})", resp.status) from None
        if resp.status in (401, 403):
            raise PretixError(f"pretix refused the token (HTTP {resp.status})", resp.status, retry=True, body=parsed)
        if resp.status in RETRY_STATUS:
            after = resp.getheader("Retry-After", "")
            raise PretixError(f"pretix answered HTTP {resp.status}", resp.status, retry=True, body=parsed,
                              retry_after=float(after) if after.isdigit() else 0.0)
        return resp.status, parsed

    def get(self, path: str, params: Optional[dict] = None) -> dict:
        status, body = self.request("GET", path, params=params)
        if status != 200 or not isinstance(body, dict):
            raise PretixError(f"GET {path}: HTTP {status}", status, retry=status >= 500 or status == 404, body=body)
        return body

    def pages(self, path: str, params: Optional[dict] = None, on_page=None) -> Iterator[dict]:
        """Every result of a paged list, page by page (our own page numbers, never its `next` URL)."""
        params = dict(params or {})
        for page in range(1, MAX_PAGES + 1):
            body = self.get(path, {**params, "page": page})
            results, count = body.get("results"), body.get("count")
            if not isinstance(results, list) or not isinstance(count, int):
                raise PretixError(f"GET {path}: not a paged list", retry=False)
            if on_page:
                on_page(page, len(results), count)
            for r in results:
                if isinstance(r, dict):
                    yield r
            if not body.get("next") or not results:
                return
        raise PretixError(f"GET {path}: more than {MAX_PAGES} pages", retry=False)

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
        body = {"error_reason": reason, "raw_barcode": raw[:500], "nonce": nonce, "datetime": iso(ts_ms),
                "type": "exit" if exit else "entry", "error_explanation": why[:200]}
        if position:
            body["position"] = position
        status, parsed = self.request("POST", f"/events/{urllib.parse.quote(event)}/checkinlists/{list_id}"
                                               "/failed_checkins/", body)
        return status, parsed if isinstance(parsed, dict) else {}

    def list_status(self, event: str, list_id: int) -> dict:
        return self.get(f"/events/{urllib.parse.quote(event)}/checkinlists/{list_id}/status/")
