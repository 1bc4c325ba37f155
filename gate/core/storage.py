"""Where each program keeps its files under `[storage] dir` (one place for the names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _StateDir:
    dir: Path

    @classmethod
    def of(cls, storage_dir, create: bool = True):
        d = Path(storage_dir)
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return cls(d)


@dataclass(frozen=True)
class GateFiles(_StateDir):
    """A gate's state directory: ticket store and outbox (with the sequence numbers)."""

    @property
    def tickets(self) -> Path:
        return self.dir / "tickets.db"

    @property
    def outbox(self) -> Path:
        return self.dir / "outbox.db"


@dataclass(frozen=True)
class HouseFiles(_StateDir):
    """The house's state directory: the attendance log."""

    @property
    def log(self) -> Path:
        return self.dir / "house.db"
