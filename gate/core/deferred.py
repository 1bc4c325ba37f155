"""Modules a gate never uses, made to load only when something first touches them.

numpy 1.x (Debian bookworm's, so the Pi's) imports random, ma, polynomial, fft and ctypeslib from its
`__init__`, whatever the program uses. A gate uses none of them, and on a Pi Zero 2 W they cost about
4 MB of the gate's resident memory and a tenth of its start-up. `defer()` hands those names to the
standard library's `importlib.util.LazyLoader`: the module object is created as usual, so
`numpy.random` exists and `from numpy import random` works, but its code runs only when an attribute
of it is first read. A program that does use one just loads it then. numpy 2 already loads these
lazily itself, and there this changes nothing.

`defer()` must run before numpy is first imported, so the gate's CLI calls it before anything else of
the scan path (gate/cli/gatecmds.py). It is for a process's start, not for library code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

UNUSED_BY_A_GATE = ("numpy.random", "numpy.ma", "numpy.polynomial", "numpy.fft", "numpy.ctypeslib")


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules as the path finder does, with their loader made lazy."""

    def __init__(self, names) -> None:
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer(names=UNUSED_BY_A_GATE) -> bool:
    """Make `names` load lazily in this process; False (and nothing done) for any name already
    imported or when a finder is already installed. Returns True when the finder was installed."""
    if any(isinstance(f, _DeferringFinder) for f in sys.meta_path):
        return False
    names = [n for n in names if n not in sys.modules]
    if not names:
        return False
    sys.meta_path.insert(0, _DeferringFinder(names))
    return True

