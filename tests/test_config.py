"""Config: every error names the dotted key and the 1-based line:col; exit 78 from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import get_args, get_origin

import pytest

from agent.config.loader import load_config, parse_text
from agent.config.rooms import RoomConfig
from agent.config.schema import AgentConfig
from agent.errors import ConfigError
from tests.conftest import ROOT, run_agent

EXAMPLE = ROOT / "config" / "agent.example.yaml"
ROOMS_EXAMPLE = ROOT / "config" / "rooms.example.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "c.yaml")
    return info.value.problems


def _documents_every_key(model: type, node: object, prefix: str) -> None:
    """Every field of ``model`` is in the example ``node`` and described; sections and lists
    of sections (``rooms``, each item) are walked."""
    assert isinstance(node, dict), f"{prefix or 'root'} is not a section in the example"
    for name, field in model.model_fields.items():
        assert name in node, f"{prefix}{name} missing from the example config"
        assert field.description, f"{prefix}{name} has no description"
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            _documents_every_key(ann, node[name], f"{prefix}{name}.")
        item = get_args(ann)[0] if get_origin(ann) is list else None
        if isinstance(item, type) and hasattr(item, "model_fields") and node[name]:
            _documents_every_key(item, node[name][0], f"{prefix}{name}[0].")


def test_rooms_example_is_valid_and_documents_every_room_key() -> None:
    cfg = load_config(ROOMS_EXAMPLE)
    assert [r.id for r in cfg.rooms] == ["kitchen", "hall"]
    from ruamel.yaml import YAML

    doc = YAML(typ="rt").load(ROOMS_EXAMPLE.read_text())
    room = doc["rooms"][0]
    for name, field in RoomConfig.model_fields.items():
        assert name in room, f"rooms[0].{name} missing from the rooms example"
        assert field.description, f"rooms[0].{name} has no description"
    # A room's camera and microphone are the top-level sections' own classes, whose every
    # key agent.example.yaml documents.
    for name in ("camera", "microphone"):
        assert RoomConfig.model_fields[name].annotation is AgentConfig.model_fields[name].annotation


def test_example_config_is_valid_and_documents_every_key() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.intents["light_on"] == ["turn on the light", "lights on"]
    assert cfg.intents["light_off"] == ["turn off the light", "lights off"]
    assert len(cfg.intents) >= 4
    assert cfg.events.voice_command.require_person is True
    from ruamel.yaml import YAML

    doc = YAML(typ="rt").load(EXAMPLE.read_text())
    _documents_every_key(AgentConfig, doc, "")


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


# -- rooms: several camera + microphone pairs in one agent ----------------------------------

TWO_ROOMS = """device_id: house
rooms:
  - id: kitchen
    name: Kitchen
    camera:
      source: http://127.0.0.1:8081/
    microphone:
      source: kitchen_mic
  - id: hall
    camera:
      source: /dev/video2
"""


def test_without_rooms_one_room_is_the_device_with_the_top_level_pair() -> None:
    cfg = parse_text("device_id: box\ncamera:\n  source: clip.avi\n")
    [room] = cfg.room_configs()
    assert room.id == "box" and room.cfg is cfg  # the config itself: nothing changes
    assert cfg.rooms == []


def test_rooms_each_get_a_config_of_their_own() -> None:
    cfg = parse_text(TWO_ROOMS, "c.yaml")
    kitchen, hall = cfg.room_configs()
    assert (kitchen.id, hall.id) == ("kitchen", "hall")
    assert kitchen.cfg.device_id == "kitchen" and hall.cfg.device_id == "hall"
    assert kitchen.cfg.camera.source == "http://127.0.0.1:8081/"
    assert kitchen.cfg.microphone.source == "kitchen_mic"
    assert hall.cfg.camera.source == "/dev/video2" and hall.cfg.microphone.source == "default"
    assert kitchen.cfg.homeassistant.device_name == "Kitchen"
    assert hall.cfg.homeassistant.device_name is None
    # Every other section is the agent's, shared by all rooms.
    assert kitchen.cfg.vision == hall.cfg.vision == cfg.vision
    assert kitchen.cfg.rooms == [] and kitchen.cfg.mqtt == cfg.mqtt


def test_duplicate_room_id_rejected_with_its_line() -> None:
    text = TWO_ROOMS + "  - id: kitchen\n"
    assert problems(text) == [
        "c.yaml:12:5 rooms[2].id: room id 'kitchen' is already the id of rooms[0]; "
        "each room needs its own id"
    ]


def test_room_named_like_the_device_rejected() -> None:
    [msg] = problems(TWO_ROOMS + "  - id: house\n")
    assert msg.startswith("c.yaml:12:5 rooms[2].id: room id 'house' is the agent's device_id")


def test_top_level_camera_beside_rooms_rejected() -> None:
    [msg] = problems("camera:\n  fps: 5\n" + TWO_ROOMS)
    assert msg.startswith("c.yaml:1:1 camera: with 'rooms', set each room's camera under")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("    lens: wide\n", "c.yaml:12:5 rooms[1].lens: Extra inputs are not permitted"),
        ("    name: ''\n", "c.yaml:12:5 rooms[1].name: String should have at least 1 character"),
    ],
)
def test_bad_room_key_names_key_and_line(extra: str, where: str) -> None:
    assert problems(TWO_ROOMS + extra) == [where]


def test_bad_room_id_and_missing_id() -> None:
    found = problems(TWO_ROOMS + "  - id: a/b\n  - name: x\n")
    assert found[0].startswith("c.yaml:12:5 rooms[2].id: String should match pattern")
    assert found[1] == "c.yaml:13:5 rooms[3].id: Field required"


def test_programmatic_duplicate_rooms_rejected_too() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"rooms\[1\]\.id: room id 'a' is already"):
        AgentConfig.model_validate({"rooms": [{"id": "a"}, {"id": "a"}]})


def test_cli_check_config_lists_rooms_and_exits_78_on_a_duplicate(tmp_path: Path) -> None:
    good = tmp_path / "rooms.yaml"
    good.write_text(TWO_ROOMS)
    res = run_agent("check-config", str(good))
    assert res.returncode == 0, res.stderr
    assert "room kitchen: camera: network stream" in res.stdout
    assert "room hall: camera: V4L2 device /dev/video2" in res.stdout
    assert "warning" not in res.stdout
    same = tmp_path / "same.yaml"
    same.write_text(TWO_ROOMS + "  - id: attic\n    camera:\n      source: /dev/video2\n")
    res = run_agent("check-config", str(same))
    assert res.returncode == 0, res.stderr
    assert "warning: rooms hall, attic use the same camera '/dev/video2'" in res.stdout
    assert "warning: rooms hall, attic use the same microphone 'default'" in res.stdout
    bad = tmp_path / "dup.yaml"
    bad.write_text(TWO_ROOMS + "  - id: hall\n")
    res = run_agent("check-config", str(bad))
    assert res.returncode == 78
    assert f"{bad}:12:5 rooms[2].id: room id 'hall' is already the id of rooms[1]" in res.stderr
    assert "Traceback" not in res.stderr


def test_pair_picks_one_room_for_tools_that_use_one() -> None:
    cfg = parse_text(TWO_ROOMS)
    assert cfg.pair("kitchen").microphone.source == "kitchen_mic"
    assert cfg.pair("hall").camera.source == "/dev/video2"
    with pytest.raises(ConfigError, match=r"rooms: name one with --room \(rooms: kitchen, hall\)"):
        cfg.pair()
    with pytest.raises(ConfigError, match=r"rooms: no room 'attic'"):
        cfg.pair("attic")
    plain = parse_text("device_id: box\n")
    assert plain.pair() is plain


def test_enroll_from_a_microphone_needs_a_room_when_there_are_several(tmp_path: Path) -> None:
    cfg = tmp_path / "rooms.yaml"
    cfg.write_text(TWO_ROOMS)
    res = run_agent("enroll", "--config", str(cfg), "--phrase", "lights on", "--takes", "1")
    assert res.returncode == 78, res.stderr
    assert "rooms: name one with --room (rooms: kitchen, hall)" in res.stderr
    assert "Traceback" not in res.stderr
