"""Undoing a build: each part closed in its turn, a part that fails to close logged and passed over.

The gate's and the house's composition roots (gate/build.py, gate/house/build.py) both end this way,
like gpiozero's `CompositeDevice.close()`: one part that raises never keeps the parts after it (the
relay, the broker connection, the databases) from closing.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

Step = tuple[str, Callable[[Any], object]]   # (the owner's attribute naming the part, how to close it)


def close_in_order(owner: object, steps: Iterable[Step], log: logging.Logger, message: str = "closing the %s") -> None:
    """Run each step on `owner`'s part of that name, skipping parts never built (None); a step that
    raises is logged on `log` as `message % name`, with its traceback, and the next step runs."""
    for name, close in steps:
        part = getattr(owner, name)
        if part is None:
            continue
        try:
            close(part)
        except Exception:
            log.exception(message, name)
