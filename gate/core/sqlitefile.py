"""A corrupt SQLite file is named, moved aside with a timestamp, and replaced by a fresh one.

A gate or house that cannot start because one file was overwritten (`file is not a
database`) helps nobody: the file is kept, under a name that says when and why it was
set aside, for whoever wants to recover it; the operator is told which file and what
happens next; and the store starts again empty, to be rebuilt where it can be (the
ticket store from the retained ticket list, the house's log from the broker session
and the gates' resend, the outbox from the rows that can still be read).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
T = TypeVar("T")


def is_corrupt(exc: BaseException) -> bool:
    """The file itself is damaged (not: locked, full, unreadable)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc)
    return "not a database" in text or "malformed" in text


def check(db: sqlite3.Connection) -> None:
    """Raise DatabaseError unless SQLite's quick check finds the file sound."""
    row = db.execute("PRAGMA quick_check(1)").fetchone()
    if not row or row[0] != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed ({row[0] if row else 'no answer'})")


def set_aside(path: Path, why: str, what: str, next_step: str) -> Path:
    """Rename a damaged database (and its -wal/-shm) to PATH.corrupt-<UTC time>; log it; return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    log.error("%s %s is damaged (%s): moved aside to %s, starting a fresh one; %s",
              what, path, why, aside, next_step)
    return aside


def open_or_set_aside(path, opener: Callable[[], T], what: str, next_step: str) -> tuple[T, Path | None]:
    """`opener()` (which opens and checks the file); if the file is damaged, set it aside and open afresh.

    Returns (what opener returned, the set-aside path or None)."""
    path = Path(path)
    try:
        return opener(), None
    except sqlite3.DatabaseError as exc:
        if not is_corrupt(exc) or not path.exists():
            raise
        aside = set_aside(path, str(exc), what, next_step)
    return opener(), aside


def damaged(path: Path) -> str:
    """Why the SQLite file at path is damaged ('' when it is sound or absent)."""
    if not path.exists():
        return ""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_corrupt(exc) else ""
    return ""


def set_aside_damaged(paths, what: str, next_step: str) -> list[Path]:
    """Of several files opened together, set aside those that are damaged."""
    out = []
    for p in map(Path, paths):
        why = damaged(p)
        if why:
            out.append(set_aside(p, why, what, next_step))
    return out


def readonly_uri(path) -> str | None:
    """A URI that opens the SQLite file at `path` for reading on read-only storage; None when it does not exist.

    `mode=ro` reads a WAL database whose -wal and -shm files are there (a gate stopped uncleanly:
    the WAL may hold the newest rows). A cleanly closed one has neither, and SQLite cannot make its
    -shm on read-only storage: then `immutable=1`, which is exact because nothing can change the file."""
    path = Path(path)
    if not path.exists():
        return None
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return uri
        finally:
            db.close()
    except sqlite3.OperationalError:
        if path.with_name(path.name + "-wal").exists():
            raise   # immutable would read around the WAL's rows: better to say we cannot read it
    return uri + "&immutable=1"


def connect_readonly(path, schema: str = "", **kw) -> sqlite3.Connection:
    """The database at `path` for reading on read-only storage (`readonly_uri`); an empty one in memory,
    made with `schema`, when there is no such file."""
    uri = readonly_uri(path)
    db = sqlite3.connect(uri or ":memory:", uri=True, **kw)
    if uri is None and schema:
        db.executescript(schema)
    return db


def attach_readonly(db: sqlite3.Connection, path, name: str, schema: str = "") -> None:
    """Attach the database at `path` as `name`, for reading on read-only storage (an empty one in memory,
    made with `schema`'s statements, when there is no such file). `db` must have been opened with uri=True."""
    uri = readonly_uri(path)
    db.execute(f"ATTACH DATABASE ? AS {name}", (uri or ":memory:",))
    if uri is None:
        for stmt in schema.split(";"):
            if stmt.strip():
                db.execute(stmt)

