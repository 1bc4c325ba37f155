"""`gate house -c FILE pretix sync|status [--accept-shrink]`: the pretix link by hand.

`sync` syncs once now, with progress, and publishes the list to the gates; a result the
guard holds back (empty, shrinking by an unusual share, mostly unusable) is not
published and the command says so and exits 1, unless `--accept-shrink` says a person
has looked and it is right. `status` shows what the house holds, what is held back or
set aside, and the upload queue by state. Works beside a running house (same SQLite, WAL).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gate.boxoffice.publish import ListPublisher
from gate.bus import topics
from gate.bus.codec import pack_scan
from gate.core.errors import ConfigError
from gate.house.pretix_list import build_list
from gate.house.pretix_rows import set_aside_report
from gate.house.pretix_sync import PSEUDO_GATE, PretixError, PretixSync
from gate.house.uploads import SCHEMA as UPLOADS_SCHEMA
from gate.house.uploads import Uploader


def _when(ms) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "never"


def status(sync: PretixSync, cfg) -> int:
    up = Uploader(sync.db, sync.client, cfg.pretix.event, cfg.pretix.checkin_list).status()
    st = sync.status()
    print(f"positions held: {st['positions']:,}; last sync: {_when(st['last_sync'])}; "
          f"changes asked for since: {st['marker'] or 'none (the next sync reads the whole list)'}")
    held = st["held"]
    if held:
        print(f"HELD BACK ({_when(held.get('at'))}): {held.get('text')}")
    aside = set_aside_report(sync.db, 10)
    if aside["count"]:
        print(f"positions set aside at the last sync: {aside['count']:,} "
              f"({', '.join(f'{n} {why}' for why, n in aside['by_reason'].items())})")
        for r in aside["rows"]:
            print(f"  position {r['position']} order {r['order']}: {r['reason']}  {r['excerpt'][:120]}")
    s = up["states"]
    print(f"upload queue: {s['queued']:,} waiting"
          + (f" (oldest {up['oldest_waiting_s']:.0f} s)" if up["oldest_waiting_s"] is not None else "")
          + f", {s['done']:,} uploaded, {s['refused']:,} refused by pretix, {s['failed']:,} failed, "
          f"{s['set_aside']:,} set aside")
    return 0


def _pass_on(cfg, events) -> None:
    """Check-ins made in pretix, to the gates and the house, with a client of our own."""
    from gate.bus.client import connect, make_client
    c = make_client(cfg.mqtt, f"house-{cfg.venue}-sync-{int(time.time())}")
    connect(c, cfg.mqtt)
    c.loop_start()
    try:
        infos = [c.publish(topics.scan(cfg.venue, PSEUDO_GATE), pack_scan(e), qos=1) for e in events]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        c.disconnect()
        c.loop_stop()


def sync_once(cfg, action: str = "sync", accept_shrink: bool = False) -> int:
    """One sync now (published to the gates), or the status; the exit code."""
    from gate.core.progress import Progress
    from gate.house.pretix_link import read_token
    db_path = Path(cfg.storage.dir) / "house.db"
    Path(cfg.storage.dir).mkdir(parents=True, exist_ok=True)
    try:
        token = read_token(cfg)
    except (OSError, ValueError) as exc:
        raise ConfigError(cfg.path, "pretix.token_file", 0, str(exc)) from None
    sync = PretixSync(cfg, db_path, token)
    try:
        sync.db.executescript(UPLOADS_SCHEMA)
        if action == "status":
            return status(sync, cfg)
        bars: dict = {}

        def progress(what, done, total):
            bars.setdefault(what, Progress(f"pretix {what}"))(done, total)
        try:
            r = sync.sync(progress, accept=accept_shrink)
        except PretixError as exc:
            print(f"gate: pretix sync failed: {exc}", file=sys.stderr)
            return 1
        for p in bars.values():
            p.done("read")
        if r.held:
            print(f"gate: {r.held.text}", file=sys.stderr)
            return 1
        publisher = ListPublisher.from_config(cfg, role="house")
        try:
            payload, _, n = build_list(sync, publisher)
        except ValueError as exc:
            print(f"gate: the ticket list cannot be made: {exc}", file=sys.stderr)
            return 1
        publisher.publish(payload)      # raises GateError in words when the broker does not take it
        sync.note_published(n)
        if r.foreign_checkins:
            _pass_on(cfg, r.foreign_checkins)
        if r.skipped:
            print(f"gate: {r.skipped:,} position(s) pretix sent were set aside (see `gate house -c "
                  f"{cfg.path} pretix status`)", file=sys.stderr)
        accepted = " (accepted by hand)" if accept_shrink else ""
        print(f"pretix sync ({'full' if r.full else f'{r.changed_orders} changed orders'}, {r.seconds:.1f} s): "
              f"{n:,} tickets published to {topics.tickets(cfg.venue)}{accepted}; "
              f"{len(r.foreign_checkins)} check-in(s) made in pretix passed on")
        return 0
    finally:
        sync.close()


__all__ = ["sync_once", "status"]
