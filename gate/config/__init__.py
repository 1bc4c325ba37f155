"""Configuration: TOML files checked against typed sections, one module per section.

Each section's module (gate.py for [gate], camera.py for [camera], ...) holds its dataclass, the
choices and ranges on its fields (rules.py) and its cross-checks; loader.py parses the TOML, builds
the sections and runs every section's checks from one place. Ids that become MQTT topic levels are
checked with the bus's own rules (gate/core/ids.py).
"""

from gate.config.camera import CameraSection
from gate.config.decode import DecodeSection
from gate.config.feedback import FeedbackSection
from gate.config.gate import GateSection
from gate.config.handheld import HandheldSection
from gate.config.hospitality import HospitalitySection, TagRule
from gate.config.house import HouseSection, listen_is_private, parse_listen
from gate.config.loader import Config, find_line, load, parse, warnings
from gate.config.mqtt import MqttSection
from gate.config.pretix import PretixSection
from gate.config.reader import ReaderSection
from gate.config.rules import secret_file_problem
from gate.config.signing import SigningSection
from gate.config.storage import StorageSection
from gate.config.turnstile import TurnstileSection

__all__ = ["CameraSection", "Config", "DecodeSection", "FeedbackSection", "GateSection", "HandheldSection",
           "HospitalitySection", "HouseSection", "MqttSection", "PretixSection", "ReaderSection", "SigningSection",
           "StorageSection", "TagRule", "TurnstileSection", "find_line", "listen_is_private", "load", "parse",
           "parse_listen", "secret_file_problem", "warnings"]
