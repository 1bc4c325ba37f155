from pathlib import Path

import pytest

from gate.config import load, parse
from gate.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["turnstile", "handheld", "house"])
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
