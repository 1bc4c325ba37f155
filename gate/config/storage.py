"""[storage]: the directory a gate or the house keeps its SQLite files and state in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StorageSection:
    dir: str = "/var/lib/gate"


def check(cfg, fail) -> None:
    """Nothing to check up front: the directory is made (or refused) when the service starts."""
