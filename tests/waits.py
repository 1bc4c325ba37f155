"""Waiting for work that takes as long as it takes, and for the house to have handled everything sent."""

import time

from gate.bus.codec import pack_scan
from tests.conftest import api, publish_raw, scan_event, wait_for


def wait_while_moving(done, progress, stall=10.0, step=0.05, what="condition"):
    """Wait for `done()` for as long as `progress()` keeps changing: work that is slow on a loaded machine
    gets the time it needs; a hang fails once nothing has moved for `stall` s."""
    last, moved = progress(), time.monotonic()
    while not done():
        now, seen = time.monotonic(), progress()
        if seen != last:
            last, moved = seen, now
        elif now - moved > stall:
            said = what() if callable(what) else what
            raise AssertionError(f"waiting for {said}: nothing moved for {stall:g} s (stuck at {seen!r})")
        time.sleep(step)


def house_settled(port, cfg, client_id="barrier"):
    """Wait until the house has handled everything published before this call: a marker scan for an event
    of its own goes to the broker after them, and the house counts in the order it receives."""
    mark = scan_event(f"MARK{time.monotonic_ns()}", gate=client_id)
    mark.event = "barrier"
    before = next((e["admitted"] for e in api(cfg)["events"] if e["event"] == "barrier"), 0)
    publish_raw(port, f"gate/hall/{client_id}/scan", [pack_scan(mark)], client_id)
    wait_for(lambda: next((e["admitted"] for e in api(cfg)["events"] if e["event"] == "barrier"), 0) > before,
             what="the house past a marker sent after everything else")
