"""The written form of a barcode scanner source (`hid:PATH`, `serial:PATH[@BAUD]`), checked
the same way by `gate config check` and by the gate that opens it."""

from __future__ import annotations


def parse_reader_spec(spec: str) -> tuple[str, str, int]:
    """`hid:PATH` or `serial:PATH[@BAUD]` -> (kind, path, baud; 0 = the reader's default).
    Raises ValueError saying what was expected."""
    kind, _, rest = spec.partition(":")
    if kind == "hid" and rest:
        return "hid", rest, 0
    if kind == "serial" and rest:
        port, _, baud = rest.partition("@")
        if baud and not (baud.isascii() and baud.isdigit() and 50 <= int(baud) <= 4_000_000):
            raise ValueError(f"{spec}: the baud rate must be a number, e.g. serial:/dev/ttyACM0@115200")
        if port:
            return "serial", port, int(baud) if baud else 0
    raise ValueError(f"{spec}: expected hid:/dev/input/eventN or serial:/dev/ttyACM0[@BAUD]")
