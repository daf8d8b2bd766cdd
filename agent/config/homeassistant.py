"""Config sections of Home Assistant discovery and of the MQTT control surface (commands, stats)."""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.config.base import Section


def _plain_topic(value: str) -> str:
    if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
        raise ValueError("must not contain '+' or '#' or start/end with '/'")
    return value


class HomeAssistantConfig(Section):
    discovery: bool = Field(
        True, description="Publish Home Assistant MQTT discovery configs (retained)."
    )
    discovery_prefix: str = Field(
        "homeassistant",
        min_length=1,
        description="Discovery topic prefix: <prefix>/<component>/<device_id>/<object_id>/config.",
    )
    status_topic: str = Field(
        "homeassistant/status",
        min_length=1,
        description="Home Assistant's birth topic; discovery is republished when it says 'online'.",
    )
    device_name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Device name shown in Home Assistant; default 'edge-agent <device_id>'.",
    )

    @field_validator("discovery_prefix", "status_topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        return _plain_topic(value)


class ControlConfig(Section):
    commands: bool = Field(
        True,
        description="Accept commands on <base>/set/<key> (echoed to <base>/state/<key>).",
    )
    stats_interval_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="Seconds between <base>/stats messages.",
    )
    persist: bool = Field(
        True,
        description="Keep values set by commands across restarts ($STATE_DIRECTORY/settings.json); "
        "false: every start begins from the config file.",
    )
