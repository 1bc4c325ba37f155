"""Reading a config: TOML into typed sections, then every section's checks, from this one place.

The schema is the section dataclasses (one module per section, each beside its own checks): a key
that is not a field is an error, a value of the wrong type is an error, and both name the key and
its line. Secrets (MQTT password, signing keys) are only ever paths or environment variable names
here, never the secret itself.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gate.config import (
    boxoffice,
    camera,
    decode,
    feedback,
    handheld,
    hospitality,
    house,
    mqtt,
    pretix,
    reader,
    signing,
    storage,
    turnstile,
)
from gate.config import gate as gate_
from gate.config.boxoffice import BoxOfficeSection
from gate.config.camera import CameraSection
from gate.config.decode import DecodeSection
from gate.config.feedback import FeedbackSection
from gate.config.gate import GateSection
from gate.config.handheld import HandheldSection
from gate.config.hospitality import HospitalitySection
from gate.config.house import HouseSection
from gate.config.mqtt import MqttSection
from gate.config.pretix import PretixSection
from gate.config.reader import ReaderSection
from gate.config.rules import check_choices
from gate.config.signing import SigningSection
from gate.config.storage import StorageSection
from gate.config.turnstile import TurnstileSection
from gate.core.errors import ConfigError


@dataclass
class Config:
    path: str = ""
    gate: Optional[GateSection] = None
    camera: CameraSection = field(default_factory=CameraSection)
    decode: DecodeSection = field(default_factory=DecodeSection)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    turnstile: TurnstileSection = field(default_factory=TurnstileSection)
    handheld: HandheldSection = field(default_factory=HandheldSection)
    reader: ReaderSection = field(default_factory=ReaderSection)
    hospitality: HospitalitySection = field(default_factory=HospitalitySection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    storage: StorageSection = field(default_factory=StorageSection)
    signing: SigningSection = field(default_factory=SigningSection)
    pretix: PretixSection = field(default_factory=PretixSection)
    house: Optional[HouseSection] = None
    boxoffice: Optional[BoxOfficeSection] = None   # the box office's own config (gate/config/boxoffice.py)

    @property
    def venue(self) -> str:
        if self.gate is not None:
            return self.gate.venue
        if self.house is not None:
            return self.house.venue
        assert self.boxoffice is not None, "parse() refuses a config with none of [gate], [house], [boxoffice]"
        return self.boxoffice.venue


# Each section's module, in the order its checks run: who the gate is first (the bus identity), the
# hardware next, then the files a key names, the network and pretix.
MODULES = {"gate": gate_, "camera": camera, "decode": decode, "feedback": feedback, "turnstile": turnstile,
           "handheld": handheld, "reader": reader, "hospitality": hospitality, "signing": signing,
           "house": house, "boxoffice": boxoffice, "mqtt": mqtt, "pretix": pretix, "storage": storage}
SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "path"}
assert set(MODULES) == set(SECTIONS), "every section of Config has its module"


def find_line(text: str, dotted: str) -> int:
    """Best-effort line number of a dotted key in TOML text (0 when not found)."""
    parts = dotted.split(".")
    table, key = parts[:-1], parts[-1]
    current: list[str] = []
    header_line = 0
    key_re = re.compile(r'^\s*"?' + re.escape(key) + r'"?\s*=')
    inline_re = re.compile(r'[{,]\s*"?' + re.escape(key) + r'"?\s*=')
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
        if m:
            current = [p.strip().strip('"') for p in m.group(1).split(".")]
            if current == parts:
                header_line = n
            continue
        if current == table and key_re.match(line):
            return n
        if current == table[:-1] and table and inline_re.search(line):
            return n
        if current == table[:-1] and table and re.match(r"^\s*" + re.escape(table[-1]) + r"\s*=", line) \
                and inline_re.search(line):
            return n
    return header_line


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(value, tp, dotted, fail):
    """Check value against the annotation tp, returning the converted value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        return _convert(value, inner, dotted, fail)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(dotted, f"expected a table, got {type(value).__name__}")
        return _build(tp, value, dotted, fail)
    if origin is list:
        if not isinstance(value, list):
            fail(dotted, f"expected a list, got {type(value).__name__}")
        return [_convert(v, args[0], f"{dotted}", fail) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            fail(dotted, f"expected a table, got {type(value).__name__}")
        return {str(k): _convert(v, args[1], f"{dotted}.{k}", fail) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        fail(dotted, f"expected {_type_name(tp)}, got a boolean")
    if not isinstance(value, tp):
        fail(dotted, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, data: dict, prefix: str, fail, renamed: dict | None = None):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            if renamed and key in renamed:
                fail(dotted, renamed[key])
            valid = ", ".join(sorted(fields))
            fail(dotted, f"unknown key (valid keys here: {valid})")
        kwargs[key] = _convert(value, hints[key], dotted, fail)
    return cls(**kwargs)


def parse(text: str, path: str = "<config>") -> Config:
    """Parse and validate config text; raises ConfigError naming key and line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, "(syntax)", int(m.group(1)) if m else 0, str(exc)) from None

    def fail(dotted, problem):
        raise ConfigError(path, dotted, find_line(text, dotted), problem)

    cfg = Config(path=str(path))
    hints = typing.get_type_hints(Config)
    for name, value in raw.items():
        if name not in SECTIONS:
            fail(name, f"unknown section (valid sections: {', '.join(sorted(SECTIONS))})")
        tp = hints[name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        section_cls = inner[0] if inner else tp
        if not isinstance(value, dict):
            fail(name, "expected a table")
        setattr(cfg, name, _build(section_cls, value, name, fail, getattr(MODULES[name], "RENAMED", None)))
    check(cfg, fail)
    return cfg


def check(cfg: Config, fail) -> None:
    """Every section's checks, after parsing: choices everywhere, then each section's own rules
    (ranges on its fields, keys that depend on each other, files a key names)."""
    if cfg.gate is None and cfg.house is None and cfg.boxoffice is None:
        fail("gate", "a config needs a [gate], a [house] or a [boxoffice] section")
    for name in SECTIONS:
        section = getattr(cfg, name)
        if section is not None:
            check_choices(section, name, fail)
    for module in MODULES.values():
        module.check(cfg, fail)


def warnings(cfg: Config) -> list[str]:
    """Legal but risky settings, said by `gate config check` and logged at start."""
    return [w for module in MODULES.values() if hasattr(module, "warnings") for w in module.warnings(cfg)]


def load(path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", 0, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "(file)", 0, "not UTF-8 text") from None
    return parse(text, str(p))
