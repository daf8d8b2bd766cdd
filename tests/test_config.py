"""Config: every error names the dotted key and the 1-based line:col; exit 78 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config, parse_text
from agent.config.schema import AgentConfig
from agent.errors import ConfigError
from tests.conftest import ROOT, run_agent

EXAMPLE = ROOT / "config" / "agent.example.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "c.yaml")
    return info.value.problems


def test_example_config_is_valid_and_documents_every_key() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.intents["light_on"] == ["turn on the light", "lights on"]
    assert cfg.intents["light_off"] == ["turn off the light", "lights off"]
    assert len(cfg.intents) >= 4
    assert cfg.events.voice_command.require_person is True
    from ruamel.yaml import YAML

    doc = YAML(typ="rt").load(EXAMPLE.read_text())

    def walk(model: type, node: object, prefix: str) -> None:
        assert isinstance(node, dict), f"{prefix or 'root'} is not a section in the example"
        for name, field in model.model_fields.items():
            assert name in node, f"{prefix}{name} missing from the example config"
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, node[name], f"{prefix}{name}.")

    walk(AgentConfig, doc, "")


def test_wrong_type_names_key_and_line() -> None:
    text = "device_id: box\nmqtt:\n  host: broker\n  port: seventy\n"
    [line] = problems(text)
    assert line.startswith("c.yaml:4:3 mqtt.port:")
    assert "integer" in line


def test_out_of_range_and_unknown_key_each_reported() -> None:
    text = "fusion:\n  alpha: 1.5\ncamera:\n  sorce: x\n"
    got = problems(text)
    assert any(p.startswith("c.yaml:2:3 fusion.alpha:") for p in got), got
    assert any(p.startswith("c.yaml:4:3 camera.sorce:") and "Extra" in p for p in got), got
    assert len(got) == 2


def test_duplicate_key_rejected_with_line() -> None:
    text = "mqtt:\n  port: 1883\n  port: 1884\n"
    [line] = problems(text)
    assert line.startswith("c.yaml:3:") and "duplicate" in line


def test_yaml_syntax_error_has_line() -> None:
    [line] = problems("mqtt:\n  host: [unclosed\n")
    assert line.startswith("c.yaml:")
    assert ":1:1" not in line.split(" ")[0]


def test_secret_not_echoed() -> None:
    got = problems("mqtt:\n  password: hunter2\n  port: -1\n")
    assert all("hunter2" not in p for p in got)


def test_bad_intent_phrase_rejected() -> None:
    [line] = problems("intents:\n  Light-On: ['x']\n")
    assert "intents" in line and ":2:" in line


def test_cli_check_config_exit_codes(tmp_path: Path) -> None:
    ok = run_agent("check-config", str(EXAMPLE), timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("device_id: box\nvad:\n  threshold: 2\nmqtt:\n  port: x\n  port: 1\n")
    res = run_agent("check-config", str(bad), timeout=60)
    assert res.returncode == 78
    assert "Traceback" not in res.stderr
    assert f"{bad}:6:" in res.stderr and "duplicate" in res.stderr
    bad.write_text("device_id: box\nvad:\n  threshold: 2\n")
    res = run_agent("check-config", str(bad), timeout=60)
    assert res.returncode == 78
    assert f"{bad}:3:3 vad.threshold:" in res.stderr
    res = run_agent("run", "--config", str(bad), timeout=60)
    assert res.returncode == 78
    missing = run_agent("check-config", str(tmp_path / "nope.yaml"), timeout=60)
    assert missing.returncode == 78 and "cannot read config" in missing.stderr


def test_phrase_in_two_intents_located() -> None:
    [line] = problems("intents:\n  a_on: ['lights on']\n  b_on: ['x', 'Lights on!']\n")
    assert line.startswith("c.yaml:3:") and "intents.b_on[1]" in line and "a_on" in line


def test_unknown_word_located_by_check_config(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("intents:\n  light_on:\n    - turn on the light\n    - flurbify the lamp\n")
    res = run_agent("check-config", str(cfg), timeout=60)
    assert res.returncode == 78
    assert f"{cfg}:4:7 intents.light_on[1]:" in res.stderr and "flurbify" in res.stderr
