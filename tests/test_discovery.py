"""Home Assistant MQTT discovery: every config matches HA's documented per-component schema.

The keys below are the documented configuration variables of Home Assistant's MQTT ``event``,
``binary_sensor``, ``sensor``, ``switch`` and ``number`` platforms (home-assistant.io
/integrations/<platform>.mqtt, and homeassistant/components/mqtt/*.py, schemas.py, config.py),
limited to keys that 2024.1 already understood. HA drops unknown keys silently
(``extra=vol.REMOVE_EXTRA``), so a misspelt key would pass HA and fail here.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jinja2
import jsonschema
import pytest

from agent.config.homeassistant import HomeAssistantConfig
from agent.config.mqtt import MqttConfig
from agent.core.settings import RuntimeSettings, Settings
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence, VoiceCommand
from agent.publish.broker import LocalBroker
from agent.publish.commands import CommandHandler
from agent.publish.discovery import (
    AVAILABILITY_TEMPLATE,
    BinaryState,
    ButtonEntity,
    Discovery,
    EventEntity,
)
from agent.publish.mqtt import MqttPublisher
from agent.publish.stats import Stats
from agent.publish.subscriber import Collector
from agent.publish.topics import Topics

TOPIC = {"type": "string", "minLength": 1, "pattern": r"^[^#+]+$"}
TEMPLATE = {"type": "string", "pattern": r"\{\{.*\}\}"}
STRING = {"type": "string", "minLength": 1}

DEVICE = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
    "properties": {
        "identifiers": {"type": "array", "items": STRING, "minItems": 1},
        "connections": {"type": "array"},
        "manufacturer": STRING,
        "model": STRING,
        "name": STRING,
        "hw_version": STRING,
        "sw_version": STRING,
        "suggested_area": STRING,
        "via_device": STRING,
        "configuration_url": STRING,
    },
}
ORIGIN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": STRING, "sw_version": STRING, "support_url": STRING},
}
AVAILABILITY = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["topic"],
        "properties": {
            "topic": TOPIC,
            "payload_available": STRING,
            "payload_not_available": STRING,
            "value_template": TEMPLATE,
        },
    },
}
# MQTT_ENTITY_COMMON_SCHEMA + MQTT_BASE_SCHEMA (qos, encoding) of 2024.1.
COMMON: dict[str, Any] = {
    "name": {"type": ["string", "null"]},
    "unique_id": STRING,
    "object_id": STRING,
    "device": DEVICE,
    "origin": ORIGIN,
    "availability": AVAILABILITY,
    "availability_topic": TOPIC,
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "availability_template": TEMPLATE,
    "payload_available": STRING,
    "payload_not_available": STRING,
    "enabled_by_default": {"type": "boolean"},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "icon": {"type": "string", "pattern": r"^[a-z]+:[a-z0-9-]+$"},
    "json_attributes_topic": TOPIC,
    "json_attributes_template": TEMPLATE,
    "qos": {"enum": [0, 1, 2]},
    "encoding": {"type": "string"},
}
PLATFORMS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "event": (
        ["state_topic", "event_types"],
        {
            "state_topic": TOPIC,
            "event_types": {"type": "array", "items": STRING, "minItems": 1, "uniqueItems": True},
            "device_class": {"enum": ["button", "doorbell", "motion"]},
            "value_template": TEMPLATE,
        },
    ),
    "binary_sensor": (
        ["state_topic"],
        {
            "state_topic": TOPIC,
            "device_class": STRING,
            "expire_after": {"type": "integer", "minimum": 0},
            "force_update": {"type": "boolean"},
            "off_delay": {"type": "integer", "minimum": 0},
            "payload_on": STRING,
            "payload_off": STRING,
            "value_template": TEMPLATE,
        },
    ),
    "sensor": (
        ["state_topic"],
        {
            "state_topic": TOPIC,
            "device_class": STRING,
            "expire_after": {"type": "integer", "minimum": 0},
            "force_update": {"type": "boolean"},
            "last_reset_value_template": TEMPLATE,
            "state_class": {"enum": ["measurement", "total", "total_increasing"]},
            "suggested_display_precision": {"type": "integer", "minimum": 0},
            "unit_of_measurement": STRING,
            "value_template": TEMPLATE,
        },
    ),
    "switch": (
        ["command_topic"],
        {
            "command_topic": TOPIC,
            "state_topic": TOPIC,
            "device_class": {"enum": ["outlet", "switch"]},
            "optimistic": {"type": "boolean"},
            "payload_on": STRING,
            "payload_off": STRING,
            "state_on": STRING,
            "state_off": STRING,
            "retain": {"type": "boolean"},
            "value_template": TEMPLATE,
        },
    ),
    "number": (
        ["command_topic"],
        {
            "command_topic": TOPIC,
            "command_template": TEMPLATE,
            "state_topic": TOPIC,
            "device_class": STRING,
            "min": {"type": "number"},
            "max": {"type": "number"},
            "step": {"type": "number", "exclusiveMinimum": 0},
            "mode": {"enum": ["auto", "box", "slider"]},
            "optimistic": {"type": "boolean"},
            "payload_reset": STRING,
            "retain": {"type": "boolean"},
            "unit_of_measurement": STRING,
            "value_template": TEMPLATE,
        },
    ),
    # homeassistant/components/mqtt/button.py of 2024.1.
    "button": (
        ["command_topic"],
        {
            "command_topic": TOPIC,
            "command_template": TEMPLATE,
            "device_class": {"enum": ["identify", "restart", "update"]},
            "payload_press": STRING,
            "retain": {"type": "boolean"},
        },
    ),
    # homeassistant/components/mqtt/update.py of 2024.1 (PLATFORM_SCHEMA_MODERN).
    "update": (
        [],
        {
            "command_topic": TOPIC,
            "device_class": {"enum": ["firmware"]},
            "entity_picture": STRING,
            "latest_version_template": TEMPLATE,
            "latest_version_topic": TOPIC,
            "payload_install": STRING,
            "release_summary": STRING,
            "release_url": STRING,
            "retain": {"type": "boolean"},
            "state_topic": TOPIC,
            "title": STRING,
            "value_template": TEMPLATE,
        },
    ),
}
TOPIC_RE = re.compile(
    r"^(?P<prefix>.+)/(?P<component>\w+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)


def ha_schema(component: str) -> dict[str, Any]:
    required, props = PLATFORMS[component]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        # Entities of one device: a unique_id is what lets HA keep them across restarts.
        "required": [*required, "unique_id", "device", "name"],
        "properties": {**COMMON, **props},
    }


def check_config(topic: str, payload: dict[str, Any], prefix: str = "homeassistant") -> str:
    """Validate one discovery message; returns its component."""
    m = TOPIC_RE.match(topic)
    assert m, topic
    assert m["prefix"] == prefix
    component = m["component"]
    assert component in PLATFORMS, topic
    jsonschema.Draft202012Validator(ha_schema(component)).validate(payload)
    if component == "number":
        assert payload["min"] < payload["max"]
    return component


def render(template: str, value: str) -> str:
    env = jinja2.Environment(autoescape=False)
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None
    return env.from_string(template).render(value=value, value_json=value_json)


def make_discovery(cfg: HomeAssistantConfig | None = None, updates: bool = False) -> Discovery:
    topics = Topics.for_device("edge-agent", "box-1")
    stats = Stats(f"{topics.base}/stats", lambda *a: None, 30)
    stats.add("fps", lambda: 9.5, name="Frames per second", unit="fps")
    stats.add("events", lambda: 3, name="Events", kind="counter")
    commands = CommandHandler(topics.base, RuntimeSettings(Settings()), lambda *a: None)
    return Discovery(
        cfg or HomeAssistantConfig(),
        topics,
        "box-1",
        events=[EventEntity("voice_command", "Voice command", ("light_on", "light_off"))],
        states=[BinaryState("camera", "Camera", "connectivity")],
        commands=tuple(commands.commands.values()),
        metrics=stats.metrics,
        stats_topic=stats.topic,
        updates=updates,
    )


def test_update_entity_matches_home_assistant_schema_and_reads_the_state() -> None:
    configs = dict(make_discovery(updates=True).configs())
    topic = "homeassistant/update/box-1/model_update/config"
    assert check_config(topic, configs[topic]) == "update"
    cfg = configs[topic]
    assert cfg["command_topic"] == "edge-agent/box-1/set/model_update_install"
    assert cfg["payload_install"] == "install"
    state = json.dumps(
        {"state": "available", "installed_version": "1.0.0", "latest_version": "1.1"}
    )
    # HA reads a JSON object from the state template (homeassistant/components/mqtt/update.py).
    assert json.loads(render(cfg["value_template"], state)) == {
        "installed_version": "1.0.0",
        "release_summary": None,
    }
    assert render(cfg["latest_version_template"], state) == "1.1"
    announced = json.dumps(
        {
            "state": "available",
            "installed_version": "1.0.0",
            "latest_version": "1.1",
            "summary": "Fewer false 'lights on' <b>",
        }
    )
    assert json.loads(render(cfg["value_template"], announced)) == {
        "installed_version": "1.0.0",
        "release_summary": "Fewer false 'lights on' <b>",
    }
    # No installed version (or no JSON at all): nothing, which HA ignores.
    assert render(cfg["value_template"], '{"state": "idle"}') == ""
    assert render(cfg["value_template"], "garbage") == ""
    assert "homeassistant/update/box-1/model_update/config" not in dict(make_discovery().configs())


def test_every_config_matches_home_assistant_schema() -> None:
    d = make_discovery()
    configs = d.configs()
    components = [check_config(t, p) for t, p in configs]
    assert set(components) == {"event", "binary_sensor", "sensor", "switch", "number"}
    # One device block shared by all, stable unique ids, unique topics.
    devices = {json.dumps(p["device"], sort_keys=True) for _, p in configs}
    assert len(devices) == 1
    device = configs[0][1]["device"]
    assert device["identifiers"] == ["edge_agent_box-1"]
    assert {"name", "model", "sw_version", "manufacturer"} <= set(device)
    ids = [p["unique_id"] for _, p in configs]
    assert len(ids) == len(set(ids))
    assert ids == [p["unique_id"] for _, p in make_discovery().configs()]
    assert len({t for t, _ in configs}) == len(configs)
    for _, p in configs:
        assert len(json.dumps(p)) < 4096


def test_availability_maps_stopped_to_offline() -> None:
    for _, p in make_discovery().configs():
        [avail] = p["availability"]
        assert avail["topic"] == "edge-agent/box-1/status"
        assert avail["value_template"] == AVAILABILITY_TEMPLATE
        want = {
            "online": avail["payload_available"],
            "offline": avail["payload_not_available"],
            "stopped": avail["payload_not_available"],
        }
        for status, expect in want.items():
            assert render(avail["value_template"], status) == expect


def test_event_template_gives_home_assistant_an_event_type() -> None:
    d = make_discovery()
    [(_, cfg)] = [(t, p) for t, p in d.configs() if "/event/" in t]
    assert cfg["state_topic"] == "edge-agent/box-1/event/voice_command"
    event = VoiceCommand(
        device="box-1",
        start=1.0,
        end=2.0,
        confidence=0.8,
        intent="light_off",
        text="turn off the light",
        image=ImageEvidence(0.9, 8, 8, "v@1"),
        audio=AudioEvidence(0.7, "turn off the light", "a@1", "vad@1", 0.9),
        fusion=FusionInfo("weighted_sum", 0.5, 0.5, 0.6, 0.8),
        skew_ms=10.0,
    )
    out = json.loads(render(cfg["value_template"], json.dumps(event.to_payload())))
    assert out["event_type"] == "light_off" and out["event_type"] in cfg["event_types"]
    assert out["id"] == event.id


def test_sensor_templates_read_the_stats_payload() -> None:
    stats = json.dumps({"v": 1, "fps": 9.5, "events": 3})
    sensors = [p for t, p in make_discovery().configs() if "/sensor/" in t]
    assert {render(p["value_template"], stats) for p in sensors} == {"9.5", "3"}
    assert all(p["state_topic"] == "edge-agent/box-1/stats" for p in sensors)


def test_switch_and_number_topics_are_the_command_contract() -> None:
    for t, p in make_discovery().configs():
        if "/switch/" in t or "/number/" in t:
            key = p["command_topic"].rsplit("/", 1)[1]
            assert p["command_topic"] == f"edge-agent/box-1/set/{key}"
            assert p["state_topic"] == f"edge-agent/box-1/state/{key}"
            if "/switch/" in t:
                assert (p["payload_on"], p["payload_off"]) == ("ON", "OFF")


@pytest.mark.parametrize("prefix", ["homeassistant", "ha/discovery"])
def test_configurable_prefix(prefix: str) -> None:
    d = make_discovery(HomeAssistantConfig(discovery_prefix=prefix))
    for t, p in d.configs():
        check_config(t, p, prefix=prefix)


def test_discovery_off_publishes_nothing() -> None:
    sent: list[str] = []
    d = make_discovery(HomeAssistantConfig(discovery=False))
    assert d.publish(lambda t, *a: sent.append(t)) == 0 and sent == []


def test_published_retained_and_republished_when_home_assistant_comes_online(
    broker: LocalBroker,
) -> None:
    cfg = MqttConfig(host=broker.host, port=broker.port, keepalive=5)
    pub = MqttPublisher(cfg, "box-1")
    d = make_discovery()
    n = len(d.configs())
    d.attach(pub.publish_raw, pub.subscribe)
    pub.add_connect_hook(lambda: d.publish(pub.publish_raw))
    ha = MqttPublisher(MqttConfig(host=broker.host, port=broker.port), "ha")
    pub.start()
    ha.start()
    try:
        assert pub.flush(5)
        # A late subscriber (Home Assistant starting later) gets every config, retained.
        late = Collector(broker.host, broker.port, "homeassistant/+/box-1/+/config").start()
        deadline = time.monotonic() + 10
        while len(late.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        late.stop()
        assert len(late.messages) == n and all(m.retain for m in late.messages)
        for m in late.messages:
            check_config(m.topic, m.json())
        # HA's birth message: everything is published again.
        watch = Collector(broker.host, broker.port, "homeassistant/+/box-1/+/config").start()
        time.sleep(0.2)
        retained = len(watch.messages)
        ha.publish_raw("homeassistant/status", "online")
        deadline = time.monotonic() + 10
        while len(watch.messages) < retained + n and time.monotonic() < deadline:
            time.sleep(0.02)
        watch.stop()
        fresh = [m for m in watch.messages if not m.retain]
        assert len(fresh) == n
        assert d.published == 2 * n
    finally:
        ha.close()
        pub.close()


def test_a_button_matches_home_assistant_schema() -> None:
    topics = Topics.for_device("edge-agent", "box-1")
    d = Discovery(
        HomeAssistantConfig(),
        topics,
        "box-1",
        buttons=[ButtonEntity("timeline_report", "Write timeline report")],
    )
    [(topic, cfg)] = d.configs()
    assert check_config(topic, cfg) == "button"
    assert topic == "homeassistant/button/box-1/timeline_report/config"
    assert cfg["command_topic"] == "edge-agent/box-1/set/timeline_report"
    assert cfg["payload_press"] == "PRESS" and cfg["entity_category"] == "diagnostic"


def test_a_room_of_a_multi_room_agent_is_its_own_device_via_the_agent() -> None:
    """A room's entities: their own device (linked to the agent's), available only while
    both the agent's status (the connection's last will) and the room's say online."""
    topics = Topics.for_device("edge-agent", "kitchen")
    room = Discovery(
        HomeAssistantConfig(device_name="Kitchen"),
        topics,
        "kitchen",
        events=[EventEntity("voice_command", "Voice command", ("light_on",))],
        states=[BinaryState("presence", "Presence", "occupancy")],
        agent_id="house",
        agent_status="edge-agent/house/status",
    )
    configs = room.configs()
    assert configs
    for topic, payload in configs:
        check_config(topic, payload)
        assert topic.split("/")[2] == "kitchen"
        assert payload["device"]["identifiers"] == ["edge_agent_kitchen"]
        assert payload["device"]["name"] == "Kitchen"
        assert payload["device"]["via_device"] == "edge_agent_house"
        assert payload["availability_mode"] == "all"
        agent, own = payload["availability"]
        assert (agent["topic"], own["topic"]) == (
            "edge-agent/house/status",
            "edge-agent/kitchen/status",
        )
        for avail in (agent, own):
            assert render(avail["value_template"], "stopped") == avail["payload_not_available"]
    # The one-room agent (the room is the agent) keeps its single availability topic.
    alone = Discovery(HomeAssistantConfig(), topics, "kitchen", agent_status=topics.status)
    alone_cfg = Discovery(
        HomeAssistantConfig(), topics, "kitchen", states=[BinaryState("camera", "Camera")]
    ).configs()[0][1]
    assert alone.configs() == [] and "availability_mode" not in alone_cfg
    assert "via_device" not in alone_cfg["device"]
