from pathlib import Path

import pytest

from gate.config import load, parse
from gate.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["turnstile", "handheld", "house", "boxoffice"])
def test_config_examples_are_valid(name):
    cfg = load(REPO / "config" / f"{name}.toml")
    assert cfg.venue == "hall"


def test_config_typo_names_key_and_line():
    text = '[gate]\nid = "a"\nvenue = "hall"\nevnets = ["x"]\n'
    with pytest.raises(ConfigError) as e:
        parse(text, "g.toml")
    assert e.value.key == "gate.evnets" and e.value.line == 4
    assert "g.toml:4: gate.evnets: unknown key" in str(e.value)
    assert "events" in str(e.value)  # lists the valid keys


def test_config_wrong_type_names_key_and_line():
    text = '[gate]\nid = "a"\nvenue = "hall"\n\n[camera]\nfps = "thirty"\n'
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert (e.value.key, e.value.line) == ("camera.fps", 6)
    assert "expected int" in str(e.value)


def test_config_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="camera.fps"):
        parse('[gate]\nid="a"\nvenue="v"\n[camera]\nfps = true\n')


def test_config_unknown_section_and_bad_choice():
    with pytest.raises(ConfigError, match="unknown section"):
        parse('[gate]\nid="a"\nvenue="v"\n[gpio]\nx=1\n')
    with pytest.raises(ConfigError) as e:
        parse('[gate]\nid="a"\nvenue="v"\nprofile = "tripod"\n')
    assert e.value.line == 4 and "turnstile, handheld" in str(e.value)


def test_config_syntax_error_has_line():
    with pytest.raises(ConfigError) as e:
        parse('[gate]\nid = "a"\nvenue = \n')
    assert e.value.line == 3


def test_config_bad_gate_id_and_nested_table_key():
    with pytest.raises(ConfigError, match="gate.id"):
        parse('[gate]\nid="door a"\nvenue="v"\n')
    text = '[gate]\nid="a"\nvenue="v"\n[hospitality.tags.member]\nlevel="vip"\n'
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert e.value.key == "hospitality.tags.member.level" and e.value.line == 5


def test_config_inline_table_value_type():
    text = '[house]\nvenue="hall"\ncapacity = { "eve" = "lots" }\n'
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert e.value.key == "house.capacity.eve" and e.value.line == 3


# -- bad days: configs the old check passed and the gate or house then tripped over --------------

TURNSTILE = (REPO / "config" / "turnstile.toml").read_text()
HOUSE = (REPO / "config" / "house.toml").read_text()


def _line_of(text, needle):
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _bad(tmp_path, base, old, new, name="bad.toml"):
    assert old in base, old
    text = base.replace(old, new, 1)
    p = tmp_path / name
    p.write_text(text)
    return p, text


BAD_GATE = [
    # (replace this, with this, key named, a word the message must carry)
    ('greeting = "Welcome back, {first}!"', 'greeting = "Welcome back, {firstname}!"',
     "hospitality.tags.member.greeting", "{firstname}"),
    ('greeting = "Welcome back, {first}!"', 'greeting = "Welcome back, {first!"',
     "hospitality.tags.member.greeting", "brace"),
    ("port = 1883", "port = 99999", "mqtt.port", "65535"),
    ("pulse_ms = 200", "pulse_ms = -200", "turnstile.pulse_ms", "between"),
    ("passage_timeout_s = 5.0", "passage_timeout_s = -1.0", "turnstile.passage_timeout_s", "between"),
    ("relay = 24 ", "relay = 17 ", "feedback.relay", "feedback.led_red"),
    ("passage_pin = 5 ", "passage_pin = 23 ", "turnstile.passage_pin", "feedback.buzzer"),
    ("buzzer = 23", "buzzer = 40", "feedback.buzzer", "BCM"),
    ("led_green = 27\nled_blue = 22\n", "", "feedback.led_red", "fitted together"),
    ("fps = 30", "fps = 0", "camera.fps", "between"),
    ("debounce_s = 2.0", "debounce_s = -2.0", "decode.debounce_s", "between"),
    ('source = "picamera2"', 'source = "webcam"', "camera.source", "v4l2"),
    ('events = ["2026-11-23-eve"]', 'events = ["eve/#"]', "gate.events", "MQTT"),
    ("keepalive = 15", "keepalive = 0", "mqtt.keepalive", "between"),
    ('# ca_file = "/etc/gate/ca.crt"', 'ca_file = "/nonexistent/ca.crt"', "mqtt.ca_file", "tls = false"),
    ("tls = false", 'tls = true\nca_file = "/nonexistent/ca.crt"', "mqtt.ca_file", "/nonexistent/ca.crt"),
    ('# password_file = "/etc/gate/mqtt-password"', 'password_file = "/nonexistent/pw"', "mqtt.password_file",
     "username"),
    ('ticket_keys = []', 'ticket_keys = ["/nonexistent/2026.pub"]', "signing.ticket_keys", "does not exist"),
    ('list_keys = []', 'list_keys = ["/nonexistent/box.pub"]', "signing.list_keys", "does not exist"),
    ('ticket_keys = []', 'public_keys = []', "signing.public_keys", "renamed"),
    ('# venue_secret = "/etc/gate/keys/venue.secret"', 'venue_secret = "/nonexistent/venue.secret"',
     "signing.venue_secret", "does not exist"),
]


@pytest.mark.parametrize("old,new,key,word", BAD_GATE, ids=[b[2] + ":" + b[1][:20] for b in BAD_GATE])
def test_config_check_rejects_gate_configs_that_fail_later(tmp_path, old, new, key, word):
    from conftest import run_gate_cli
    p, text = _bad(tmp_path, TURNSTILE, old, new)
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f": {key}: " in r.stderr and word in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    line = int(r.stderr.split(f"{p}:", 1)[1].split(":", 1)[0])
    assert key.rsplit(".", 1)[-1] in text.splitlines()[line - 1], (line, r.stderr)


def test_config_check_refuses_two_keys_sharing_a_key_id(tmp_path):
    """A code names its key by a 4-byte id, so of two keys with one id only one could ever be checked (its
    tickets refused at the door): `gate config check` names both files, and a verifier's keyring refuses.
    The two raw keys are sha256 of two labels whose ids collide (found once by search; a 1 in 4e9 event)."""
    import base64
    import hashlib

    from conftest import run_gate_cli

    from gate.boxoffice.ed25519 import VerifyKey
    from gate.boxoffice.keys import key_id, keyring
    raw = [hashlib.sha256(b"gate-keyid-collision-%d" % n).digest() for n in (3946, 12068)]
    assert raw[0] != raw[1] and key_id(VerifyKey(raw[0])) == key_id(VerifyKey(raw[1]))
    files = []
    for n, r in enumerate(raw):
        files.append(tmp_path / f"k{n}.pub")
        files[-1].write_text(base64.b64encode(r).decode())
    p, text = _bad(tmp_path, TURNSTILE, 'ticket_keys = []', f'ticket_keys = ["{files[0]}", "{files[1]}"]')
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2 and ": signing.ticket_keys: " in r.stderr, r.stdout + r.stderr
    assert str(files[0]) in r.stderr and str(files[1]) in r.stderr and "same key id" in r.stderr, r.stderr
    p.write_text(text.replace(f', "{files[1]}"', f', "{files[0]}"'))   # the same key twice is harmless
    assert run_gate_cli("config", "check", str(p)).returncode == 0
    with pytest.raises(ValueError, match="share the key id"):
        keyring([VerifyKey(raw[0]), VerifyKey(raw[1])])
    assert len(keyring([VerifyKey(raw[0]), VerifyKey(raw[0])])) == 1


def test_config_check_refuses_a_list_key_sharing_its_id_with_the_list_signing_keys_own(tmp_path, monkeypatch):
    """The house and the box office check lists under list_keys and their own list_signing_key's public key
    together (gate/house/lists.py), so a collision between those is one too: config check names it, where
    before the house's start met the keyring's ValueError. Every key id made one here, so any two keys
    collide; the same key under both keys (as PEM and as raw base64) is no collision."""
    import base64

    from gate.boxoffice import keys
    from gate.boxoffice.keys import new_keypair, new_secret, raw_public
    own_key, own_pub = new_keypair(tmp_path, "house")
    _, other_pub = new_keypair(tmp_path, "boxoffice")
    secret = new_secret(tmp_path, "venue")
    same_raw = tmp_path / "house-raw.pub"
    same_raw.write_text(base64.b64encode(raw_public(keys.load_public_key(own_pub))).decode())
    monkeypatch.setattr(keys, "key_id", lambda pub: b"\0\0\0\0")

    def house(list_keys):
        return HOUSE.replace("list_keys = []", f"list_keys = {[str(k) for k in list_keys]!r}".replace("'", '"'), 1) \
            .replace("[signing]", f'[signing]\nlist_signing_key = "{own_key}"\nvenue_secret = "{secret}"', 1)
    parse(house([own_pub, same_raw]))   # one key, given twice in two forms, and as the signing key's own
    with pytest.raises(ConfigError, match="signing.list_signing_key") as e:
        parse(house([other_pub]))
    assert str(other_pub) in str(e.value) and str(own_key) in str(e.value) and "same key id" in str(e.value)


def test_config_check_secret_and_ca_files_by_content(tmp_path):
    """A CA file of garbage, a password file that is a directory or only whitespace: named with the path."""
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    (tmp_path / "pwdir").mkdir()
    blank = tmp_path / "pw"
    blank.write_text("  \n")
    mq = '[gate]\nid = "a"\nvenue = "v"\n[mqtt]\n'
    for body, key, words in [
        (f'tls = true\nca_file = "{garbage}"\n', "mqtt.ca_file", [str(garbage), "PEM"]),
        (f'username = "a"\npassword_file = "{tmp_path / "pwdir"}"\n', "mqtt.password_file", ["directory"]),
        (f'username = "a"\npassword_file = "{blank}"\n', "mqtt.password_file", ["empty", str(blank)]),
    ]:
        with pytest.raises(ConfigError) as e:
            parse(mq + body, "g.toml")
        assert e.value.key == key and e.value.line == 6, str(e.value)
        assert all(w in str(e.value) for w in words), str(e.value)


BAD_HOUSE = [
    ('listen = "0.0.0.0:8080"', 'listen = "nonsense"', "house.listen", "HOST:PORT"),
    ('listen = "0.0.0.0:8080"', 'listen = "127.0.0.1:99999"', "house.listen", "65535"),
    ('listen = "0.0.0.0:8080"', 'listen = "not a host:8080"', "house.listen", "host name"),
    ('"2026-11-23-eve" = 1200', '"2026-11-23-eve" = -5', "house.capacity.2026-11-23-eve", "between"),
    ('client_id = "house-hall"', 'client_id = "house hall"', "house.client_id", "letters"),
]


@pytest.mark.parametrize("old,new,key,word", BAD_HOUSE, ids=[b[1][:24] for b in BAD_HOUSE])
def test_config_check_rejects_house_configs_that_fail_later(tmp_path, old, new, key, word):
    from conftest import run_gate_cli
    base = HOUSE.replace('listen = "127.0.0.1:8080"', 'listen = "0.0.0.0:8080"')
    p, text = _bad(tmp_path, base, old, new)
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f": {key}: " in r.stderr and word in r.stderr, r.stderr
    assert f"{p}:{_line_of(text, new.split('=')[0].strip())}:" in r.stderr, r.stderr


def test_config_check_empty_token_file_and_open_dashboard(tmp_path):
    from conftest import run_gate_cli
    token = tmp_path / "token"
    token.write_text(" \n\t\n")
    p, text = _bad(tmp_path, HOUSE, "# token_file", "token_file")
    p.write_text(text.replace("/etc/gate/dashboard-token", str(token)))
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 2 and ": house.token_file: " in r.stderr and "empty" in r.stderr, r.stderr
    # Listening on every interface without a token: legal, but said.
    p, _ = _bad(tmp_path, HOUSE, 'listen = "127.0.0.1:8080"', 'listen = "0.0.0.0:8080"', "open.toml")
    r = run_gate_cli("config", "check", str(p))
    assert r.returncode == 0 and "warning: house.listen" in r.stderr and "patron names" in r.stderr, r.stderr


def test_config_house_example_is_private():
    from gate.config import listen_is_private, parse_listen, warnings
    cfg = load(REPO / "config" / "house.toml")
    assert listen_is_private(parse_listen(cfg.house.listen)[0]) or cfg.house.token_file
    assert warnings(cfg) == []


def test_config_lone_led_red_is_rejected_by_check_and_scan_alike(tmp_path):
    """The old check passed a lone led_red and `gate scan` then died with a traceback."""
    from conftest import run_gate_cli
    text = ('[gate]\nid = "door-a"\nvenue = "hall"\n[camera]\nsource = "replay:none"\n'
            f'[feedback]\nled_red = 17\n[mqtt]\nenabled = false\n[storage]\ndir = "{tmp_path / "s"}"\n')
    p = tmp_path / "lone.toml"
    p.write_text(text)
    for args in (("config", "check", str(p)), ("scan", "-c", str(p), "--offline")):
        r = run_gate_cli(*args)
        assert r.returncode == 2, r.stderr
        assert f"{p}:7: feedback.led_red:" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_config_hospitality_tags_must_travel_in_a_scan_event(tmp_path):
    """A tag the house and the other gates would refuse (a space, too many tags) is a config error."""
    import pytest as _pytest

    from gate.config import parse
    from gate.core.errors import ConfigError
    base = '[gate]\nid = "door-a"\nvenue = "hall"\nevents = ["eve"]\n'
    parse(base + '[hospitality.tags.member]\nlevel = "greet"\n', "ok.toml")
    with _pytest.raises(ConfigError) as e:
        parse(base + '[hospitality.tags."VIP guest"]\nlevel = "greet"\n', "bad.toml")
    assert "hospitality.tags.VIP guest" in str(e.value)
    many = "".join(f'[hospitality.tags.t{i}]\nlevel = "notice"\n' for i in range(17))
    with _pytest.raises(ConfigError) as e:
        parse(base + many, "many.toml")
    assert "hospitality.tags" in str(e.value)


def test_config_entry_rules_are_checked_with_key_and_line(tmp_path):
    from tests.conftest import run_gate_cli
    base = '[gate]\nid = "a"\nvenue = "hall"\n'
    for line, key in (('doors_open = "7pm"', "gate.doors_open"), ('checkout = "25:00"', "gate.checkout"),
                      ("entries_per_day = -1", "gate.entries_per_day"),
                      ("reentry_after_min = 1e9", "gate.reentry_after_min")):
        with pytest.raises(ConfigError) as e:
            parse(base + line + "\n", "g.toml")
        assert (e.value.key, e.value.line) == (key, 4)
    cfg = parse(base + 'doors_open = "19:00"\ncheckout = "03:00"\nreentry_after_min = 15\nentries_per_day = 2\n')
    assert (cfg.gate.doors_open, cfg.gate.entries_per_day) == ("19:00", 2)
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'doors_open = "19.00"\n')
    r = run_gate_cli("config", "check", str(bad))
    assert r.returncode == 2 and "bad.toml:4: gate.doors_open" in r.stderr and "HH:MM" in r.stderr
