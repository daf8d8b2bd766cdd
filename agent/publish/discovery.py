"""Home Assistant MQTT discovery: one retained config per entity, one shared ``device`` block.

Per-component topics ``<prefix>/<component>/<device_id>/<object_id>/config`` are understood by
every Home Assistant release with MQTT discovery (2024.1 predates device-based discovery).

Entities:
- ``event``: one per event type (``voice_command``), ``event_types`` = the configured intents.
- ``binary_sensor``: one per ``…/state/<key>`` state (``ON``/``OFF``).
- ``sensor``: one per stats metric, read from ``…/stats`` (diagnostic).
- ``switch`` / ``number``: one per command (``…/set/<key>``, state on ``…/state/<key>``).
- ``button``: one per action (``PRESS`` on ``…/set/<key>``), e.g. "Write timeline report".

Availability follows ``…/status``. Home Assistant accepts one "available" and one "not
available" payload and ignores any other, so a bare ``stopped`` would leave the entities
available; the template maps everything but ``online`` (``offline``, ``stopped``) to ``offline``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent.config.homeassistant import HomeAssistantConfig
from agent.errors import PublishError
from agent.publish.commands import Command
from agent.publish.stats import Metric
from agent.publish.topics import Topics

_LOGGER = logging.getLogger(__name__)

PublishFn = Callable[[str, str | bytes, int, bool], None]
SubscribeFn = Callable[[str, Callable[[str, bytes], None]], None]

AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
# installed_version and release_summary for HA's update entity; nothing ("" is ignored by HA)
# when the state carries no installed version.
UPDATE_STATE_TEMPLATE = (
    "{% if value_json is defined and value_json.installed_version is defined %}"
    "{{ {'installed_version': value_json.installed_version,"
    " 'release_summary': value_json.get('summary') or none} | tojson }}{% endif %}"
)
_SAFE = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True, slots=True)
class BinaryState:
    """A retained ``ON``/``OFF`` state on ``…/state/<key>``."""

    key: str
    name: str
    device_class: str | None = None


@dataclass(frozen=True, slots=True)
class EventEntity:
    """An event type published on ``…/event/<type>`` with its possible sub-types."""

    type: str
    name: str
    event_types: tuple[str, ...]
    subtype_field: str = "intent"


@dataclass(frozen=True, slots=True)
class ButtonEntity:
    """An action without a state: Home Assistant's button publishes ``PRESS`` to
    ``…/set/<key>``."""

    key: str
    name: str


def safe_id(text: str) -> str:
    """Characters Home Assistant accepts in node and object ids."""
    return _SAFE.sub("_", text)


class Discovery:
    def __init__(
        self,
        cfg: HomeAssistantConfig,
        topics: Topics,
        device_id: str,
        *,
        events: Sequence[EventEntity] = (),
        states: Sequence[BinaryState] = (),
        commands: Sequence[Command] = (),
        command_base: str | None = None,
        metrics: Sequence[Metric] = (),
        stats_topic: str | None = None,
        updates: bool = False,
        buttons: Sequence[ButtonEntity] = (),
        agent_id: str | None = None,
        agent_status: str | None = None,
    ) -> None:
        """``agent_id``/``agent_status``: this device is one room of the agent ``agent_id``
        (several rooms, one connection): HA shows it connected via the agent's device, and
        it is available only while both the agent's ``…/status`` (the connection's last
        will) and the room's own say ``online``."""
        self.cfg = cfg
        self.topics = topics
        self.node = safe_id(device_id)
        self.device_id = device_id
        self._events = tuple(events)
        self._states = tuple(states)
        self._commands = tuple(commands)
        self._command_base = command_base or topics.base
        self._metrics = tuple(metrics)
        self._stats_topic = stats_topic or f"{topics.base}/stats"
        self._updates = updates
        self._buttons = tuple(buttons)
        self._agent_id = agent_id
        self._agent_status = agent_status if agent_status != topics.status else None
        self.published = 0

    # -- payloads --------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "identifiers": [f"edge_agent_{self.node}"],
            "name": self.cfg.device_name or f"edge-agent {self.device_id}",
            "model": "edge-agent",
            "manufacturer": "edge-agent project",
            "sw_version": __version__,
        }
        if self._agent_id is not None and safe_id(self._agent_id) != self.node:
            block["via_device"] = f"edge_agent_{safe_id(self._agent_id)}"
        return block

    def _availability(self) -> dict[str, Any]:
        topics = [self.topics.status]
        if self._agent_status is not None:
            topics.insert(0, self._agent_status)
        out: dict[str, Any] = {
            "availability": [
                {
                    "topic": topic,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                    "value_template": AVAILABILITY_TEMPLATE,
                }
                for topic in topics
            ]
        }
        if len(topics) > 1:
            out["availability_mode"] = "all"
        return out

    def _common(self, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"edge_agent_{self.node}_{object_id}",
            "device": self.device(),
            "origin": {"name": "edge-agent", "sw_version": __version__},
            **self._availability(),
        }

    def topic(self, component: str, object_id: str) -> str:
        return f"{self.cfg.discovery_prefix}/{component}/{self.node}/{object_id}/config"

    def configs(self) -> list[tuple[str, dict[str, Any]]]:
        """(config topic, payload) for every entity."""
        out: list[tuple[str, dict[str, Any]]] = []
        for ev in self._events:
            oid = safe_id(ev.type)
            # HA wants {"event_type": ...}; our payload says it in "intent" (or another field).
            tpl = (
                "{{ {'event_type': value_json." + ev.subtype_field + ","
                " 'confidence': value_json.confidence, 'id': value_json.id} | tojson }}"
            )
            out.append(
                (
                    self.topic("event", oid),
                    {
                        **self._common(oid, ev.name),
                        "state_topic": self.topics.event(ev.type),
                        "event_types": list(ev.event_types),
                        "value_template": tpl,
                        "qos": 1,
                    },
                )
            )
        for st in self._states:
            oid = safe_id(st.key)
            cfg = {
                **self._common(oid, st.name),
                "state_topic": self.topics.state(st.key),
                "payload_on": "ON",
                "payload_off": "OFF",
            }
            if st.device_class:
                cfg["device_class"] = st.device_class
            out.append((self.topic("binary_sensor", oid), cfg))
        for m in self._metrics:
            oid = safe_id(f"stats_{m.key}")
            cfg = {
                **self._common(oid, m.name),
                "state_topic": self._stats_topic,
                "value_template": "{{ value_json." + m.key + " }}",
                "state_class": "total_increasing" if m.kind == "counter" else "measurement",
                "entity_category": "diagnostic",
            }
            if m.unit:
                cfg["unit_of_measurement"] = m.unit
            if not m.enabled_by_default:
                cfg["enabled_by_default"] = False
            out.append((self.topic("sensor", oid), cfg))
        if self._updates:
            # Home Assistant's update entity: versions from the updater's retained state, its
            # install button publishes "install" (agent.models.updates). The state template
            # gives HA a JSON object, which also carries the announced summary as the
            # release notes HA shows next to the install button.
            state = f"{self._command_base}/state/model_update"
            out.append(
                (
                    self.topic("update", "model_update"),
                    {
                        **self._common("model_update", "Model update"),
                        "state_topic": state,
                        "value_template": UPDATE_STATE_TEMPLATE,
                        "latest_version_topic": state,
                        "latest_version_template": "{{ value_json.latest_version }}",
                        "command_topic": f"{self._command_base}/set/model_update_install",
                        "payload_install": "install",
                        "device_class": "firmware",
                        "entity_category": "config",
                        "title": "edge-agent model",
                        "json_attributes_topic": state,
                        "qos": 1,
                        "retain": False,
                    },
                )
            )
        for c in self._commands:
            oid = safe_id(c.key)
            cfg = {
                **self._common(oid, c.name),
                "command_topic": f"{self._command_base}/set/{c.key}",
                "state_topic": f"{self._command_base}/state/{c.key}",
                "entity_category": "config",
                "qos": 1,
                "retain": False,
            }
            if c.kind == "switch":
                cfg.update(payload_on="ON", payload_off="OFF")
                out.append((self.topic("switch", oid), cfg))
            else:
                cfg.update(min=c.minimum, max=c.maximum, step=c.step, mode="box")
                out.append((self.topic("number", oid), cfg))
        for b in self._buttons:
            oid = safe_id(b.key)
            out.append(
                (
                    self.topic("button", oid),
                    {
                        **self._common(oid, b.name),
                        "command_topic": f"{self._command_base}/set/{b.key}",
                        "payload_press": "PRESS",
                        "entity_category": "diagnostic",
                        "qos": 1,
                        "retain": False,
                    },
                )
            )
        return out

    # -- publishing ------------------------------------------------------------
    def publish(self, publish: PublishFn) -> int:
        """Publish every config, retained; returns how many (0 when discovery is off)."""
        if not self.cfg.discovery:
            return 0
        n = 0
        for topic, payload in self.configs():
            try:
                publish(topic, json.dumps(payload, separators=(",", ":")), 1, True)
                n += 1
            except PublishError as err:
                _LOGGER.warning("discovery config %s not published: %s", topic, err)
        self.published += n
        _LOGGER.debug("published %d Home Assistant discovery configs", n)
        return n

    def attach(self, publish: PublishFn, subscribe: SubscribeFn) -> None:
        """Republish when Home Assistant announces itself (its birth message)."""
        if not self.cfg.discovery:
            return

        def on_status(topic: str, payload: bytes) -> None:
            if payload.strip() == b"online":
                _LOGGER.info("Home Assistant is online; republishing discovery")
                self.publish(publish)

        subscribe(self.cfg.status_topic, on_status)
