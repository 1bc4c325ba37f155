"""Modules a gate never uses, made to load only when something first touches them.

numpy 1.x (Debian bookworm's, so the Pi's) imports random, ma, polynomial, fft and ctypeslib from its
`__init__`, whatever the program uses. A gate uses none of them, and they cost it about 4 MB resident
(`gate scan` in the arm64 VM: 51.5-52.5 MB with this, 55.3-60.4 MB without). `defer()` hands those names to the
standard library's `importlib.util.LazyLoader`: the module object is created as usual, so
`numpy.random` exists and `from numpy import random` works, but its code runs only when an attribute
of it is first read. A program that does use one just loads it then. numpy 2 already loads these
lazily itself, and there this changes nothing.

`defer()` must run before numpy is first imported, so the gate's CLI calls it before anything else of
the scan path (gate/cli/gatecmds.py). It is for a process's start, not for library code.

Two things the standard library's lazy modules do not do, and what is done about them here:
- Importing a submodule of a deferred package by its full name (`import numpy.ma.core`) runs the package
  when its `__path__` is read, and the package's code imports that submodule itself; the import under way
  would then run it a second time, into a second module (`numpy.ma.MaskedArray` not the class
  `numpy.ma.core` holds). The finder hands that import the module already made.
- On the Pi's Python 3.11 the first touch is not thread-safe: a second thread touching the module while the
  first one's touch runs its code finds names missing (AttributeError). Nothing a gate runs touches these
  modules at all (tests/test_deferred.py runs a replayed scan and checks it), so no thread of it can.
"""

from __future__ import annotations

import copy
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
        if target is None and name.rpartition(".")[0] in self.names:
            module = sys.modules.get(name)
            made = getattr(module, "__spec__", None)
            if made is not None:
                # Reading the deferred parent's __path__ for this import ran the parent, which imported this
                # very module: the import under way takes it instead of running its code again.
                spec = copy.copy(made)
                spec.loader = _Made(module)
                return spec
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


class _Made(importlib.abc.Loader):
    """Loads a module that is already made and run: gives that module, and leaves its spec as it was."""

    def __init__(self, module) -> None:
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec   # the import system set the copy handed to it


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
