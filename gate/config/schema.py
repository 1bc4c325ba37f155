"""Configuration: TOML files checked against typed sections.

The schema is the dataclasses below: a key that is not a field is an error, a
value of the wrong type is an error, and both name the key and its line.
Secrets (MQTT password, signing keys) are only ever paths or environment
variable names here, never the secret itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gate.config.boxoffice import BoxOfficeSection
from gate.core.errors import ConfigError

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class GateSection:
    id: str = ""
    venue: str = ""
    profile: str = "turnstile"      # turnstile | handheld
    events: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    direction: str = "in"            # in | out: an exit-mode gate lets people out
    reentry: bool = False            # admit again after a recorded exit
    # Entry rules (gate/decide.py); a refusal is the `rules` verdict, its detail names the rule.
    doors_open: str = ""             # "19:00": no entry before this time of the venue day ("" = none)
    checkout: str = ""               # "03:00": everyone still inside is checked out; the venue day starts here
    reentry_after_min: int = 0       # minutes between an exit and a re-entry (anti-passback); 0 = none
    entries_per_day: int = 0         # entries per ticket per venue day; 0 = no limit


@dataclass
class CameraSection:
    source: str = "picamera2"
    width: int = 640
    height: int = 480
    fps: int = 30
    idle_fps: int = 5                # handheld: rate while the trigger is released
    max_exposure_us: int = 8000      # caps auto-exposure so a moving ticket stays sharp
    autofocus: bool = True           # Camera Module 3 only; ignored where unsupported
    lens_position: Optional[float] = None  # dioptres; fixes focus instead of autofocus
    main_scale: int = 2              # picamera2: main stream at this many times the size, for re-reads; 1 = none
    refocus_s: float = 3.0           # least time between focus scans when codes keep failing; 0 = never
    stall_s: float = 2.0             # no frame for this long = camera lost


@dataclass
class DecodeSection:
    engine: str = "zxing"            # zxing | zbar
    symbologies: list[str] = field(default_factory=lambda: ["qr", "code128"])
    debounce_s: float = 2.0          # the same code within this window is one verdict
    full_every: int = 4              # a full-resolution pass every N frames
    max_payload: int = 1024          # longer codes are rejected as unknown


@dataclass
class FeedbackSection:
    led_red: Optional[int] = None    # BCM pin numbers; None = not fitted
    led_green: Optional[int] = None
    led_blue: Optional[int] = None
    buzzer: Optional[int] = None
    tonal_buzzer: bool = False       # a TonalBuzzer on a PWM pin instead of an active buzzer
    relay: Optional[int] = None      # turnstile release
    relay_active_high: bool = True
    display: str = "none"            # none | console | ssd1306 | sh1106


@dataclass
class TurnstileSection:
    relay_mode: str = "pulse"        # pulse | hold
    pulse_ms: int = 200
    passage_pin: Optional[int] = None      # confirms someone went through
    exit_passage_pin: Optional[int] = None
    free_passage_pin: Optional[int] = None  # fire alarm: hold open while active
    passage_timeout_s: float = 5.0
    # Accessible release: a ticket with one of these tags gets a longer release / time to pass.
    assist_tags: list[str] = field(default_factory=lambda: ["wheelchair"])
    assist_pulse_ms: int = 1500
    assist_timeout_s: float = 20.0
    # Out of order: the turnstile latches (relay off) until a staff card or `gate doctor --clear-latch`.
    held_open_s: float = 30.0        # passage sensor active this long = door held open (0 = never latch)
    camera_lost_s: float = 60.0      # camera lost this long (0 = never latch)
    latch_unreleased_passage: bool = True   # a passage with no release latches


@dataclass
class ReaderSection:
    """A USB (hid:) or serial barcode scanner used instead of a camera (gate/sources/readers.py)."""
    layout: str = "us"               # us | de: the keyboard layout the USB scanner types in
    terminator: str = "enter"        # enter | tab: the key the USB scanner ends each code with


@dataclass
class HandheldSection:
    trigger_pin: Optional[int] = None
    linger_s: float = 0.7            # keep scanning this long after release
    mode_pin: Optional[int] = None   # a second button: look-up (info) mode on / off
    long_press_s: float = 0.0        # holding the trigger this long toggles look-up mode (0 = off)


@dataclass
class TagRule:
    level: str = "notice"            # notice | greet | assist
    greeting: str = ""               # {holder} and {seat} are filled in


@dataclass
class HospitalitySection:
    tags: dict[str, TagRule] = field(default_factory=dict)


@dataclass
class MqttSection:
    host: str = "localhost"
    port: int = 1883
    keepalive: int = 15
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password_file: str = ""          # or the environment variable GATE_MQTT_PASSWORD
    enabled: bool = True


@dataclass
class StorageSection:
    dir: str = "/var/lib/gate"


@dataclass
class SigningSection:
    ticket_keys: list[str] = field(default_factory=list)  # gates: public keys (files) that sign GT1 tickets
    list_keys: list[str] = field(default_factory=list)    # gates, house: public keys that sign ticket lists
    list_signing_key: str = ""       # publishers (house, box office): private key that signs ticket lists
    staff_key: str = ""              # box office: private key that signs staff cards and venue control messages
    venue_secret: str = ""           # file: the venue secret (code hashes, list encryption); gates, house, box office
    staff_keys: list[str] = field(default_factory=list)   # gates, house: public keys that sign staff cards
                                                          # and venue control messages


@dataclass
class PretixSection:
    # a gate: pretix_sig1 keys (files; base64 of PEM as pretix shows them, or PEM). The house's
    # ticket list brings the event's keys too; these are for gates that never hear from a house.
    public_keys: list[str] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)     # item id -> gate event
    subevents: dict[str, str] = field(default_factory=dict)  # subevent id -> gate event
    zones: dict[str, str] = field(default_factory=dict)      # item id -> zone
    event: str = ""                  # the event slug (gate events are <slug> or <slug>-<subevent id>)
    # the house: its one link to pretix
    url: str = ""                    # e.g. https://pretix.example.org
    organizer: str = ""
    checkin_list: int = 0
    token_file: str = ""             # a pretix API or device token; or GATE_PRETIX_TOKEN
    sync_every_s: float = 60.0       # down-sync interval (also on start and on demand)
    timeout_s: float = 15.0          # per HTTP request


@dataclass
class HouseSection:
    venue: str = ""
    listen: str = "127.0.0.1:8080"
    capacity: dict[str, int] = field(default_factory=dict)
    token_file: str = ""             # optional dashboard access token
    client_id: str = ""
    checkout: str = ""               # "03:00": everyone still inside is counted as left (same as the gates')


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
        if self.gate:
            return self.gate.venue
        return self.house.venue if self.house else self.boxoffice.venue


SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "path"}
CHOICES = {
    ("gate", "profile"): ("turnstile", "handheld"),
    ("gate", "direction"): ("in", "out"),
    ("decode", "engine"): ("zxing", "zbar"),
    ("feedback", "display"): ("none", "console", "ssd1306", "sh1106"),
    ("turnstile", "relay_mode"): ("pulse", "hold"),
    ("reader", "layout"): ("us", "de"),
    ("reader", "terminator"): ("enter", "tab"),
}


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
        if current == table[:-1] and table and re.match(r"^\s*" + re.escape(table[-1]) + r"\s*=", line) and inline_re.search(line):
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


def _build(cls, data: dict, prefix: str, fail):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            if cls is SigningSection and key == "public_keys":
                fail(dotted, "renamed: GT1 ticket keys are now signing.ticket_keys (ticket lists: signing.list_keys)")
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
        setattr(cfg, name, _build(section_cls, value, name, fail))
    _check(cfg, fail)
    return cfg


def _check(cfg: Config, fail) -> None:
    """Cross-field checks the types alone cannot express."""
    if cfg.gate is None and cfg.house is None and cfg.boxoffice is None:
        fail("gate", "a config needs a [gate], a [house] or a [boxoffice] section")
    for (section, key), allowed in CHOICES.items():
        obj = getattr(cfg, section)
        if obj is not None and getattr(obj, key) not in allowed:
            fail(f"{section}.{key}", f"must be one of {', '.join(allowed)}")
    if cfg.gate is not None:
        if not ID_RE.match(cfg.gate.id):
            fail("gate.id", "required, letters, digits, '_' and '-' only")
        if not ID_RE.match(cfg.gate.venue):
            fail("gate.venue", "required, letters, digits, '_' and '-' only")
        from gate.core.timeofday import parse_time_of_day
        for key in ("doors_open", "checkout"):
            try:
                parse_time_of_day(getattr(cfg.gate, key))
            except ValueError as exc:
                fail(f"gate.{key}", str(exc))
        for key in ("reentry_after_min", "entries_per_day"):
            if not 0 <= getattr(cfg.gate, key) <= 100_000:
                fail(f"gate.{key}", "must be between 0 and 100000 (0 = no limit)")
    if cfg.house is not None and not ID_RE.match(cfg.house.venue):
        fail("house.venue", "required, letters, digits, '_' and '-' only")
    if cfg.house is not None:
        from gate.core.timeofday import parse_time_of_day
        try:
            parse_time_of_day(cfg.house.checkout)
        except ValueError as exc:
            fail("house.checkout", str(exc))
    if cfg.gate is not None:   # the house never loads the decoder (nor numpy)
        from gate.core.symbologies import SYMBOLOGIES
        for sym in cfg.decode.symbologies:
            if sym not in SYMBOLOGIES:
                fail("decode.symbologies", f"unknown symbology {sym!r} (known: {', '.join(SYMBOLOGIES)})")
        if cfg.decode.engine == "zbar" and importlib.util.find_spec("pyzbar") is None:
            fail("decode.engine", "zbar needs the optional pyzbar package: pip install 'gate[zbar]' "
                 "(and apt install libzbar0)")
    if cfg.camera.source.startswith(("hid:", "serial:")):
        from gate.core.readerspec import parse_reader_spec
        try:
            parse_reader_spec(cfg.camera.source)
        except ValueError as exc:
            fail("camera.source", str(exc))
    for tag, rule in cfg.hospitality.tags.items():
        if rule.level not in ("notice", "greet", "assist"):
            fail(f"hospitality.tags.{tag}.level", "must be one of notice, greet, assist")
    from gate.config import checks as config_checks
    if cfg.gate is not None:
        config_checks.check_gate(cfg, fail)
    if cfg.house is not None:
        config_checks.check_house(cfg, fail)
    from gate.config import boxoffice
    boxoffice.check(cfg, fail)
    config_checks.check_mqtt(cfg, fail)
    from gate.config.pretix import check_pretix
    check_pretix(cfg, fail)


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
