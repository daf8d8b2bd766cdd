"""Config section of the MQTT publisher: broker, credentials, TLS, outbox, reconnect policy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config.base import Section


class MqttTlsConfig(Section):
    enabled: bool = Field(
        False, description="Connect over TLS; never falls back to plaintext when set."
    )
    ca_file: Path | None = Field(
        None, description="PEM CA bundle that signs the broker's certificate; default system CAs."
    )
    cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="PEM private key of cert_file (unencrypted).")
    insecure: bool = Field(
        False,
        description="Skip the broker host name check (the chain is still verified). Testing only.",
    )

    @model_validator(mode="after")
    def _files_need_enabled(self) -> MqttTlsConfig:
        if not self.enabled and (self.ca_file or self.cert_file or self.key_file):
            # Files given but TLS off would silently connect in plaintext: refuse.
            raise ValueError("TLS files are set but enabled is false; set enabled: true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class OutboxConfig(Section):
    path: Path | None = Field(
        None,
        description="SQLite file of the durable outbox; default $STATE_DIRECTORY/outbox.sqlite, "
        "else ~/.local/state/edge-agent/outbox.sqlite.",
    )
    max_messages: int = Field(
        100_000, ge=10, le=10_000_000, description="Messages kept on disk before eviction."
    )
    max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024**3,
        description="Payload+topic bytes kept on disk before eviction.",
    )
    max_inflight: int = Field(
        20, ge=1, le=1000, description="Messages handed to the broker and not yet acknowledged."
    )
    alarm_types: tuple[str, ...] = Field(
        ("help_call", "fall"),
        description="Event types in the alarm class: never evicted from the outbox.",
    )


class MqttConfig(Section):
    enabled: bool = Field(True, description="Publish to an MQTT broker ('run' needs it).")
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (TLS usually 8883).")
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
    keepalive: int = Field(
        30, ge=2, le=3600, description="MQTT keepalive in seconds; a dead link is found in ~2x."
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of event messages.")
    connect_timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds for the TCP (and TLS) connect."
    )
    reconnect_max_delay: float = Field(
        0.8,
        ge=0.05,
        le=300,
        description="Cap of the jittered reconnect backoff after a lost connection (seconds).",
    )
    refused_max_delay: float = Field(
        60.0,
        ge=0.5,
        le=3600,
        description="Cap of the backoff after the broker refused us (credentials, TLS) (seconds).",
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig, description="TLS to the broker.")
    outbox: OutboxConfig = Field(
        default_factory=OutboxConfig,
        description="Durable on-disk outbox of unacknowledged messages.",
    )

    @field_validator("base_topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must not contain '+' or '#' or start/end with '/'")
        return value
