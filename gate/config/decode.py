"""[decode]: which engine reads which symbologies, how often at full resolution, and the debounce."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from gate.config.rules import Fail, check_ranges, choice, ranged


@dataclass
class DecodeSection:
    engine: str = choice("zxing", "zbar")
    symbologies: list[str] = field(default_factory=lambda: ["qr", "code128"])
    debounce_s: float = ranged(2.0, 0, 60, " s")     # the same code within this window is one verdict
    full_every: int = ranged(4, 1, 1000)              # a full-resolution pass every N frames
    max_payload: int = ranged(1024, 16, 65536, " bytes")   # longer codes are rejected as unknown


def check(cfg, fail: Fail) -> None:
    """A gate's symbologies are known and its engine installed; ranges."""
    if cfg.gate is None:   # the house never loads the decoder (nor numpy)
        return
    d = cfg.decode
    from gate.core.symbologies import SYMBOLOGIES
    for sym in d.symbologies:
        if sym not in SYMBOLOGIES:
            fail("decode.symbologies", f"unknown symbology {sym!r} (known: {', '.join(SYMBOLOGIES)})")
    if d.engine == "zbar" and importlib.util.find_spec("pyzbar") is None:
        fail("decode.engine", "zbar needs the optional pyzbar package: pip install 'gate[zbar]' "
             "(and apt install libzbar0)")
    check_ranges(d, "decode", fail)
    if not d.symbologies:
        fail("decode.symbologies", "empty: the gate would read nothing")
