"""Value checks of a parsed config: everything `gate scan` or `gate house` would
later trip over, found up front and reported with its key (config.py adds the line).

The types are checked by the schema in config.py; this module checks what the
types cannot say: ranges, pins that collide, greeting placeholders, listen
addresses, and the files a key names (they must exist, be readable and hold
what the key says). Each rule calls `fail(dotted_key, problem)`, which raises.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string

from gate.bus import values
from gate.bus.tls import ca_file_problem

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# An event id ends up in MQTT topics and Home Assistant ids: no '/', '+', '#' or spaces.
EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
SOURCE_RE = re.compile(r"^(picamera2|(v4l2|hid|serial|replay):.+)$")
RESERVED_EVENTS = values.RESERVED_EVENTS   # gate/<venue>/house/status is the house's own topic
BCM_PINS = range(0, 28)          # the GPIO numbers on the Pi's 40-pin header (every model)
GREETING_FIELDS = ("holder", "first", "seat")


def check_range(fail, dotted: str, value, low=None, high=None, what="") -> None:
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            fail(dotted, f"must be at least {low:g}{what}, got {value:g}")
        elif low is None:
            fail(dotted, f"must be at most {high:g}{what}, got {value:g}")
        fail(dotted, f"must be between {low:g} and {high:g}{what}, got {value:g}")


def check_greeting(fail, dotted: str, template: str) -> None:
    """A greeting is filled with str.format: every field must be one we fill in."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        fail(dotted, f"{exc} (write {{{{ and }}}} for literal braces)")
    for _, name, _, _ in fields:
        if name is not None and name not in GREETING_FIELDS:
            fail(dotted, f"unknown placeholder {{{name}}} (known: "
                         + ", ".join("{" + f + "}" for f in GREETING_FIELDS) + ")")
    try:  # a format spec or conversion can still fail on a real name
        template.format(**{f: "Ada Lovelace" for f in GREETING_FIELDS})
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        fail(dotted, f"cannot be filled in: {exc}")


def secret_file_problem(path: str) -> str:
    """Why a secret file cannot be used ('' when it can)."""
    if os.path.isdir(path):
        return f"{path} is a directory, not a file"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(65537)
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return f"{path} is not readable by this user"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    if not text.strip():
        return f"{path} is empty (or only whitespace)"
    if len(text) > 65536:
        return f"{path} is over 64 KiB: not a secret"
    return ""


def parse_listen(listen: str):
    """(host, port) of a HOST:PORT listen address; raises ValueError saying why not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOST_RE.match(host):
                raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return host, int(port)


def listen_is_private(host: str) -> bool:
    """True when only this machine can reach the address."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_gate(cfg, fail) -> None:
    g = cfg.gate
    for ev in g.events:
        if not EVENT_RE.match(ev) or ev in RESERVED_EVENTS:
            fail("gate.events", f"event id {ev!r}: letters, digits and _ . : - only, not 'status' "
                               "(it becomes an MQTT topic)")
    c = cfg.camera
    if not SOURCE_RE.match(c.source):
        fail("camera.source", f"{c.source!r}: use picamera2, v4l2:/dev/videoN, hid:/dev/input/..., "
                              "serial:/dev/ttyACM0[@BAUD] or replay:PATH[@FPS]")
    check_range(fail, "camera.width", c.width, 16, 4608)
    check_range(fail, "camera.height", c.height, 16, 3456)
    check_range(fail, "camera.fps", c.fps, 1, 120)
    check_range(fail, "camera.idle_fps", c.idle_fps, 1, c.fps, " (and not above camera.fps)")
    check_range(fail, "camera.max_exposure_us", c.max_exposure_us, 100, 1_000_000)
    check_range(fail, "camera.lens_position", c.lens_position, 0, 32, " dioptres")
    check_range(fail, "camera.stall_s", c.stall_s, 0.1, 60, " s")
    check_range(fail, "camera.main_scale", c.main_scale, 1, 4, " (1 = no main stream)")
    check_range(fail, "camera.refocus_s", c.refocus_s, 0, 3600, " s (0 = never)")
    d = cfg.decode
    check_range(fail, "decode.debounce_s", d.debounce_s, 0, 60, " s")
    check_range(fail, "decode.full_every", d.full_every, 1, 1000)
    check_range(fail, "decode.max_payload", d.max_payload, 16, 65536, " bytes")
    if not d.symbologies:
        fail("decode.symbologies", "empty: the gate would read nothing")
    t = cfg.turnstile
    check_range(fail, "turnstile.pulse_ms", t.pulse_ms, 20, 10_000, " ms")
    check_range(fail, "turnstile.passage_timeout_s", t.passage_timeout_s, 0.5, 120, " s")
    check_range(fail, "turnstile.assist_pulse_ms", t.assist_pulse_ms, 20, 30_000, " ms")
    check_range(fail, "turnstile.assist_timeout_s", t.assist_timeout_s, 0.5, 600, " s")
    check_range(fail, "turnstile.held_open_s", t.held_open_s, 0, 3600, " s (0 = never latch)")
    check_range(fail, "turnstile.camera_lost_s", t.camera_lost_s, 0, 86400, " s (0 = never latch)")
    check_range(fail, "handheld.linger_s", cfg.handheld.linger_s, 0, 10, " s")
    check_range(fail, "handheld.long_press_s", cfg.handheld.long_press_s, 0, 30, " s (0 = off)")
    fb = cfg.feedback
    leds = {"feedback.led_red": fb.led_red, "feedback.led_green": fb.led_green, "feedback.led_blue": fb.led_blue}
    fitted = [k for k, v in leds.items() if v is not None]
    if fitted and len(fitted) != 3:
        missing = [k for k, v in leds.items() if v is None]
        fail(fitted[0], f"the LED is an RGB LED: led_red, led_green and led_blue are fitted together "
                        f"(missing {', '.join(k.split('.')[1] for k in missing)})")
    if g.profile == "turnstile" and fb.relay is None and t.passage_pin is not None:
        fail("turnstile.passage_pin", "a passage sensor without a relay (feedback.relay) confirms nothing")
    check_pins(cfg, fail)
    if len(cfg.hospitality.tags) > values.MAX_ATTENTION:
        fail("hospitality.tags", f"at most {values.MAX_ATTENTION} tags ask for attention (a scan event carries no more)")
    for tag, rule in cfg.hospitality.tags.items():
        if not values.TAG_RE.fullmatch(tag):
            fail(f"hospitality.tags.{tag}", "a tag is 1-32 letters, digits, '_', '-' or '.' (it travels in every "
                 "scan event; the house and the other gates refuse anything else)")
        check_greeting(fail, f"hospitality.tags.{tag}.greeting", rule.greeting)
    check_key_files(cfg, fail)


def check_pins(cfg, fail) -> None:
    """Every pin the profile uses is a header GPIO and used once."""
    fb, t = cfg.feedback, cfg.turnstile
    pins = [("feedback.led_red", fb.led_red), ("feedback.led_green", fb.led_green),
            ("feedback.led_blue", fb.led_blue), ("feedback.buzzer", fb.buzzer), ("feedback.relay", fb.relay)]
    if cfg.gate.profile == "turnstile":
        pins += [("turnstile.passage_pin", t.passage_pin), ("turnstile.exit_passage_pin", t.exit_passage_pin),
                 ("turnstile.free_passage_pin", t.free_passage_pin)]
    else:
        pins += [("handheld.trigger_pin", cfg.handheld.trigger_pin), ("handheld.mode_pin", cfg.handheld.mode_pin)]
    seen: dict[int, str] = {}
    for key, pin in pins:
        if pin is None:
            continue
        if pin not in BCM_PINS:
            fail(key, f"GPIO {pin} does not exist: BCM numbers 0-27 (not header positions)")
        if pin in seen:
            fail(key, f"GPIO {pin} is already used by {seen[pin]}")
        seen[pin] = key


def check_key_files(cfg, fail) -> None:
    from gate.boxoffice.keys import load_private_key, load_public_key, load_secret
    s = cfg.signing
    # pretix's keys come in other forms (base64 of PEM): config_pretix.check_pretix loads those.
    for key, paths in (("signing.ticket_keys", s.ticket_keys), ("signing.list_keys", s.list_keys),
                       ("signing.staff_keys", s.staff_keys)):
        for p in paths:
            try:
                load_public_key(p)
            except IsADirectoryError:
                fail(key, f"{p} is a directory, not a key file")
            except FileNotFoundError:
                fail(key, f"{p} does not exist")
            except PermissionError:
                fail(key, f"{p} is not readable by this user")
            except OSError as exc:
                fail(key, f"cannot read {p}: {exc.strerror or exc}")
            except (ValueError, TypeError, UnicodeDecodeError):
                fail(key, f"{p} holds no Ed25519 public key (make one with `gate keys new`)")
    for key, path, load, what in (
            ("signing.list_signing_key", s.list_signing_key, load_private_key,
             "no Ed25519 private key (make one with `gate keys new`)"),
            ("signing.staff_key", s.staff_key, load_private_key,
             "no Ed25519 private key (make one with `gate keys new`)"),
            ("signing.venue_secret", s.venue_secret, load_secret,
             "no venue secret (make one with `gate keys new --secret`)")):
        if not path:
            continue
        problem = secret_file_problem(path)
        if problem:
            fail(key, problem)
        try:
            load(path)
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            fail(key, f"{path} holds {what}")
    if (s.list_keys or s.list_signing_key) and not s.venue_secret:
        fail("signing.venue_secret", "ticket lists carry code hashes and encrypted names under the venue secret: "
                                     "set it (make it with `gate keys new --secret --out DIR --name venue`)")


def check_mqtt(cfg, fail) -> None:
    m = cfg.mqtt
    if not m.enabled:
        return
    if not m.host or not (HOST_RE.match(m.host) or _is_ip(m.host)):
        fail("mqtt.host", f"{m.host!r} is neither an IP address nor a host name")
    check_range(fail, "mqtt.port", m.port, 1, 65535)
    check_range(fail, "mqtt.keepalive", m.keepalive, 5, 3600, " s")
    if m.ca_file and not m.tls:
        fail("mqtt.ca_file", "set, but tls = false: the connection would not be encrypted (set tls = true)")
    if m.tls and m.ca_file:
        problem = ca_file_problem(m.ca_file)
        if problem:
            fail("mqtt.ca_file", problem)
    if m.password_file and not m.username:
        fail("mqtt.password_file", "set, but no mqtt.username: the password would never be sent")
    if m.password_file and not os.environ.get("GATE_MQTT_PASSWORD"):
        problem = secret_file_problem(m.password_file)
        if problem:
            fail("mqtt.password_file", problem)


def check_house(cfg, fail) -> None:
    h = cfg.house
    check_key_files(cfg, fail)
    try:
        parse_listen(h.listen)
    except ValueError as exc:
        fail("house.listen", f"{h.listen!r}: {exc}")
    for ev, cap in h.capacity.items():
        if not EVENT_RE.match(ev) or ev in RESERVED_EVENTS:
            fail(f"house.capacity.{ev}", "event id: letters, digits and _ . : - only (it becomes an MQTT topic)")
        check_range(fail, f"house.capacity.{ev}", cap, 1, 1_000_000, " people")
    if h.client_id and not ID_RE.match(h.client_id):
        fail("house.client_id", "letters, digits, '_' and '-' only")
    if h.token_file and not os.environ.get("GATE_DASHBOARD_TOKEN"):
        problem = secret_file_problem(h.token_file)
        if problem:
            fail("house.token_file", problem + ": the dashboard would answer without a token")
    check_key_files(cfg, fail)   # signing.staff_keys verify the venue's control messages


def warnings(cfg) -> list[str]:
    """Legal but risky settings, said by `gate config check` and logged at start."""
    out = []
    if cfg.house is not None and not cfg.house.token_file and not os.environ.get("GATE_DASHBOARD_TOKEN"):
        host, _ = parse_listen(cfg.house.listen)
        if not listen_is_private(host):
            out.append(f"house.listen = {cfg.house.listen!r} without house.token_file: anyone on the network "
                       "can read patron names and access needs on the dashboard")
    if cfg.gate is not None and cfg.mqtt.username and cfg.mqtt.username != cfg.gate.id:
        # The broker configuration `gate broker config` writes lets user X publish only as gate X; under
        # MQTT 3.1.1 a refused publish is acknowledged all the same, so the gate's scans would vanish.
        out.append(f"mqtt.username = {cfg.mqtt.username!r} is not gate.id {cfg.gate.id!r}: a broker set up by "
                   "`gate broker config` lets each gate publish only under its own id as user name")
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
