"""[reader]: a USB (hid:) or serial barcode scanner used instead of a camera (gate/sources/readers.py)."""

from __future__ import annotations

from dataclasses import dataclass

from gate.config.rules import choice


@dataclass
class ReaderSection:
    """A USB (hid:) or serial barcode scanner used instead of a camera (gate/sources/readers.py)."""
    layout: str = choice("us", "de")              # the keyboard layout the USB scanner types in
    terminator: str = choice("enter", "tab")   # the key the USB scanner ends each code with


def check(cfg, fail) -> None:
    """Nothing beyond its choices (checked for every section by the loader)."""
