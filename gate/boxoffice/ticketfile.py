"""The box office's ticket lists (CSV or JSON), read whole or not at all.

One bad value anywhere names its row and column; nothing is returned until
the whole file has been read and checked.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Optional

from gate.core.errors import TicketFileError
from gate.core.events import TICKET_COLUMNS, Ticket

REQUIRED = ("ticket_id", "code", "event")
OPTIONAL = tuple(c for c in TICKET_COLUMNS if c not in REQUIRED)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
MAX_CODE = 1024
MAX_FIELD = 4096
MAX_ERRORS = 20
# Bounds checked before any parsing, so a hostile file costs little memory: a 1 GB line once
# peaked at 7 GB RSS before it was refused, and deep JSON nesting raised RecursionError.
MAX_FILE = 512 * 1024 * 1024      # bytes: ~3 million tickets
MAX_LINE = 64 * 1024              # bytes in one CSV line (a row of MAX_FIELD-long fields fits)
MAX_DEPTH = 8                     # JSON nesting: {"tickets": [{"tags": [...]}]} is 4


def parse_time(value: str) -> int:
    """ISO 8601 to unix ms; a time without a zone is the venue's local time."""
    dt = datetime.fromisoformat(value.strip())
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp() * 1000)


def _row_to_ticket(row: dict, rowno: int, path, errors: list) -> Optional[Ticket]:
    def bad(column, problem):
        errors.append(TicketFileError(path, rowno, column, problem))

    vals = {}
    for key in REQUIRED + OPTIONAL:
        v = row.get(key)
        if v is None:
            v = ""
        if not isinstance(v, str):
            if isinstance(v, list) and key == "tags":
                v = ";".join(str(t) for t in v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and key not in ("valid_from", "valid_until"):
                v = str(v)
            else:
                bad(key, f"expected text, got {type(v).__name__}")
                return None
        if len(v) > MAX_FIELD:
            bad(key, f"value is {len(v)} characters long (at most {MAX_FIELD})")
            return None
        vals[key] = v
    for key in REQUIRED:
        if not vals[key].strip():
            bad(key, "required value is empty")
            return None
    if len(vals["code"].encode()) > MAX_CODE:
        bad("code", f"code is longer than {MAX_CODE} bytes")
        return None
    for key in ("ticket_id", "event", "code"):
        if any(ord(ch) < 32 for ch in vals[key]):
            bad(key, "contains control characters")
            return None
    times = {}
    for key in ("valid_from", "valid_until"):
        if vals[key].strip():
            try:
                times[key] = parse_time(vals[key])
            except ValueError:
                bad(key, f"not an ISO 8601 time: {vals[key]!r}")
                return None
    status = vals["status"].strip() or "valid"
    if status not in ("valid", "revoked", "blocked"):
        bad("status", f"must be valid, revoked or blocked, got {status!r}")
        return None
    tags = tuple(t.strip() for t in vals["tags"].split(";") if t.strip())
    return Ticket(ticket_id=vals["ticket_id"].strip(), code=vals["code"], event=vals["event"].strip(),
                  holder=vals["holder"].strip(), seat=vals["seat"].strip(), zone=vals["zone"].strip(),
                  valid_from=times.get("valid_from"), valid_until=times.get("valid_until"),
                  status=status, tags=tags, note=vals["note"], patron=vals["patron"].strip())


def _decode_text(data: bytes, path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TicketFileError(path, line, "", f"not UTF-8 (byte 0x{data[exc.start]:02x}); "
                              "export the list as UTF-8 CSV") from None


def read_ticket_file(path, progress: Optional[Callable[[int, int], None]] = None) -> list[Ticket]:
    """Read a CSV or JSON ticket list; raises TicketFileError naming row and column."""
    p = Path(path)
    try:
        data = _read_bounded(p, path)
    except OSError as exc:
        raise TicketFileError(path, 0, "", f"cannot read: {exc.strerror}") from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise TicketFileError(path, line, "", "binary data (NUL byte) in a ticket list")
    text = _decode_text(data, path)
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _read_json(text, path, progress)
    return _read_csv(text, path, progress)


def _read_bounded(p: Path, path) -> bytes:
    """The file's bytes, refused early when too big or (for CSV) with a line over MAX_LINE."""
    size = p.stat().st_size
    if size > MAX_FILE:
        raise TicketFileError(path, 0, "", f"file is {size:,} bytes (at most {MAX_FILE:,}): not a ticket list")
    chunks = []
    with p.open("rb") as f:
        head = f.read(4096)
        chunks.append(head)
        if p.suffix.lower() == ".json" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
            chunks.append(f.read(MAX_FILE + 1 - len(head)))   # JSON may be one long line: bounded by size
        else:
            row = head.count(b"\n")
            tail = head.rsplit(b"\n", 1)[-1]
            while True:   # line by line, never holding more than MAX_LINE of one line
                line = f.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(tail) + len(line) > MAX_LINE:
                    raise TicketFileError(path, row + 1, "", f"line is longer than {MAX_LINE:,} bytes: "
                                          "not a ticket list row")
                chunks.append(line)
                tail = b"" if line.endswith(b"\n") else tail + line
                row += line.endswith(b"\n")
                if len(chunks) > 4096:   # keep the list of pieces short
                    chunks = [b"".join(chunks)]
    data = b"".join(chunks)
    if len(data) > MAX_FILE:
        raise TicketFileError(path, 0, "", f"file is over {MAX_FILE:,} bytes: not a ticket list")
    return data


def _json_depth(text: str) -> int:
    """How deeply brackets nest, strings aside: checked before json.loads (which recurses)."""
    bare = _JSON_STRING.sub("", text)
    depth = top = 0
    for ch in _BRACKETS.findall(bare):
        depth += 1 if ch in "[{" else -1
        if depth > top:
            top = depth
            if top > MAX_DEPTH:
                break
    return top


def _read_json(text, path, progress):
    if _json_depth(text) > MAX_DEPTH:
        raise TicketFileError(path, 0, "", f"JSON nested more than {MAX_DEPTH} levels deep: not a ticket list")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TicketFileError(path, exc.lineno, "", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(items, dict) and isinstance(items.get("tickets"), list):
        items = items["tickets"]
    if not isinstance(items, list):
        raise TicketFileError(path, 0, "", "expected a JSON list of ticket objects")
    rows: list[tuple[int, Optional[dict]]] = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            rows.append((i, None))
        else:
            rows.append((i, item))
    return _collect(rows, len(items), path, progress)


def _read_csv(text, path, progress):
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise TicketFileError(path, 1, "", "empty file: a header row is required") from None
    except csv.Error as exc:
        raise TicketFileError(path, 1, "", f"malformed CSV: {exc}") from None
    header = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TicketFileError(path, 1, missing[0], f"header lacks required column(s) {', '.join(missing)}")
    dup = {h for h in header if header.count(h) > 1 and h in REQUIRED + OPTIONAL}
    if dup:
        raise TicketFileError(path, 1, sorted(dup)[0], "column appears twice in the header")
    total = text.count("\n")

    def rows():
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TicketFileError(path, reader.line_num, "", f"malformed CSV: {exc}") from None
            if not rec or rec == [""]:
                continue
            if len(rec) != len(header):
                yield reader.line_num, len(rec)
                continue
            yield reader.line_num, dict(zip(header, rec))

    return _collect(rows(), total, path, progress, ncols=len(header))


def _collect(rows: Iterable, total: int, path, progress, ncols=0) -> list[Ticket]:
    errors: list[TicketFileError] = []
    tickets: list[Ticket] = []
    ids: dict[str, int] = {}
    codes: dict[str, int] = {}
    for n, (rowno, row) in enumerate(rows, 1):
        if progress and n % 10000 == 0:
            progress(n, total)
        if isinstance(row, int):
            errors.append(TicketFileError(path, rowno, "", f"has {row} fields, the header has {ncols}"))
        elif row is None:
            errors.append(TicketFileError(path, rowno, "", "expected an object"))
        else:
            t = _row_to_ticket(row, rowno, path, errors)
            if t is not None:
                if t.ticket_id in ids:
                    errors.append(TicketFileError(path, rowno, "ticket_id",
                                                  f"duplicate ticket id {t.ticket_id!r} (first at row {ids[t.ticket_id]})"))
                elif t.code in codes:
                    errors.append(TicketFileError(path, rowno, "code", f"duplicate code (first at row {codes[t.code]})"))
                elif t.ticket_id == t.code:
                    # Scan events and the house's log carry ticket ids in clear: this one would clone the ticket.
                    errors.append(TicketFileError(path, rowno, "ticket_id", "is the ticket's code itself; scan "
                                                  "events carry ticket ids, so give each ticket an id of its own"))
                else:
                    ids[t.ticket_id] = rowno
                    codes[t.code] = rowno
                    tickets.append(t)
        if len(errors) >= MAX_ERRORS:
            break
    if progress:
        progress(total, total)
    if errors:
        first = errors[0]
        more = "".join(f"\n  {e}" for e in errors[1:])
        raise TicketFileError(first.path, first.row, first.column,
                              first.problem + (f"\n{len(errors) - 1} more problem(s):{more}" if more else ""))
    return tickets
