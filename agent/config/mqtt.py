"""Config section of the MQTT publisher."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from agent.config.base import Section


class MqttConfig(Section):
    enabled: bool = Field(True, description="Publish to an MQTT broker ('run' needs it).")
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    base_topic: str = Field(
        "edge-agent", min_length=1, description="Topics live under <base_topic>/<device_id>/."
    )
    client_id: str | None = Field(
        None, description="MQTT client id; default edge-agent-<device_id>."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(
        None, description="Broker password (prefer password_file or EDGE_AGENT_MQTT_PASSWORD)."
    )
    password_file: Path | None = Field(
        None,
        description="File whose first line is the broker password (e.g. a systemd credential).",
    )
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of event messages.")

    @field_validator("base_topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must not contain '+' or '#' or start/end with '/'")
        return value
