"""The daemon's MQTT control surface: commands, retained states, stats, Home Assistant discovery.

Wired by the composition root (``LiveAgent``); it sees the pipeline and the publisher only
through their public attributes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from agent.config.schema import AgentConfig
from agent.core.settings import RuntimeSettings
from agent.errors import PublishError
from agent.pipeline import Pipeline
from agent.publish.commands import CommandHandler, default_commands
from agent.publish.discovery import BinaryState, ButtonEntity, Discovery, EventEntity
from agent.publish.outbox import default_outbox_path
from agent.publish.stats import Rate, Stats, recent_median_ms
from agent.publish.topics import Topics
from agent.rules.registry import claimed_intents

_LOGGER = logging.getLogger(__name__)

_UNITS = {"_ms": "ms", "_s": "s"}


class ControlPublisher(Protocol):
    """What this module needs of the MQTT publisher (agent.publish.mqtt.MqttPublisher)."""

    topics: Topics

    @property
    def reconnects(self) -> int: ...

    @property
    def published(self) -> int: ...

    @property
    def handler_errors(self) -> int: ...

    def publish_raw(
        self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False
    ) -> None: ...

    def publish_state(self, key: str, value: str) -> None: ...

    def subscribe(
        self, topic: str, handler: Callable[[str, bytes], None], qos: int = 1
    ) -> None: ...

    def add_connect_hook(self, hook: Callable[[], None]) -> None: ...


def settings_path(room: str | None = None) -> Path:
    """Where command-set values are kept: beside the outbox in the state directory; one file
    per room when the agent serves several (``settings-<room>.json``)."""
    name = "settings.json" if room is None else f"settings-{room}.json"
    return default_outbox_path(dict(os.environ)).with_name(name)


def _publish_fn(pub: ControlPublisher) -> Callable[[str, str | bytes, int, bool], None]:
    def publish(topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
        pub.publish_raw(topic, payload, qos, retain)

    return publish


def _subscribe_fn(pub: ControlPublisher) -> Callable[[str, Callable[[str, bytes], None]], None]:
    def subscribe(topic: str, handler: Callable[[str, bytes], None]) -> None:
        pub.subscribe(topic, handler)

    return subscribe


def _on_press(button: ButtonEntity, press: Callable[[], None]) -> Callable[[str, bytes], None]:
    def handler(topic: str, payload: bytes) -> None:
        # Home Assistant sends PRESS; any payload counts (a press carries no value).
        _LOGGER.info("%s pressed over MQTT", button.key)
        press()

    return handler


def _is_online(supervisor: Any) -> Callable[[], bool]:
    return lambda: bool(supervisor.state == "online")


class MqttControl:
    def __init__(
        self,
        cfg: AgentConfig,
        publisher: ControlPublisher,
        pipeline: Pipeline,
        updates: bool = False,
        buttons: dict[ButtonEntity, Callable[[], None]] | None = None,
        *,
        agent_id: str | None = None,
        agent_status: str | None = None,
    ) -> None:
        """``cfg`` is the room's (``AgentConfig.room_configs``); ``agent_id``/``agent_status``
        are given for a room of an agent that serves several (settings persist per room,
        Home Assistant links the room's device to the agent's)."""
        self.cfg = cfg
        self._updates = updates  # a model updater answers …/set/model_update
        # Actions (HA buttons): pressed on the MQTT network thread, so each must only flag
        # work for the main loop.
        self._buttons = dict(buttons or {})
        self._agent_id = agent_id
        self._agent_status = agent_status
        self.publisher = publisher
        self.pipeline = pipeline
        base = publisher.topics.base
        self.settings: RuntimeSettings = pipeline.settings
        self.commands = (
            CommandHandler(
                base,
                pipeline.settings,
                _publish_fn(publisher),
                default_commands([e.type for e in self._event_entities()]),
                handled_elsewhere=(
                    "model_update",
                    "model_update_install",
                    *(b.key for b in self._buttons),
                ),
                persist_to=(
                    settings_path(cfg.device_id if agent_id is not None else None)
                    if cfg.control.persist
                    else None
                ),
            )
            if cfg.control.commands
            else None
        )
        self.stats = Stats(f"{base}/stats", _publish_fn(publisher), cfg.control.stats_interval_s)
        self._states: dict[str, tuple[BinaryState, Callable[[], bool]]] = {}
        self._last: dict[str, bool] = {}
        self._republish = threading.Event()
        self._add_core_metrics()

    # -- registration (hooks for other components) ------------------------------
    def add_state(
        self, key: str, name: str, read: Callable[[], bool], device_class: str | None = None
    ) -> None:
        """A binary state published retained on ``…/state/<key>`` (``ON``/``OFF``) on change."""
        self._states[key] = (BinaryState(key, name, device_class), read)

    def add_stats_source(self, prefix: str, read: Callable[[], dict[str, Any]]) -> None:
        """Every numeric leaf of ``read()`` (nested dicts flattened) becomes a stats metric."""

        def leaves(data: dict[str, Any], path: tuple[str, ...]) -> list[tuple[str, ...]]:
            out: list[tuple[str, ...]] = []
            for k, v in data.items():
                if isinstance(v, dict):
                    out += leaves(v, (*path, k))
                elif v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
                    out.append((*path, k))
            return out

        def getter(parts: tuple[str, ...]) -> Callable[[], float | int | None]:
            def read_one() -> float | int | None:
                node: Any = read()
                for part in parts:
                    node = node.get(part) if isinstance(node, dict) else None
                ok = isinstance(node, int | float) and not isinstance(node, bool)
                return node if ok else None

            return read_one

        try:
            sample = read()
        except Exception:
            _LOGGER.exception("stats source %s failed", prefix)
            return
        for parts in leaves(sample, ()):
            key = "_".join(parts)
            unit = next((u for suf, u in _UNITS.items() if key.endswith(suf)), None)
            self.stats.add(
                f"{prefix}_{key}",
                getter(parts),
                name=f"{prefix} {key.replace('_', ' ')}".capitalize(),
                unit=unit,
                enabled_by_default=False,
            )

    def add_capture(self, capture: Any) -> None:
        """Camera/microphone connectivity states and their counters (agent.sources.supervisor)."""
        self.add_stats_source("capture", capture.stats)
        for dev in ("camera", "microphone"):
            sup = getattr(capture, dev, None)
            if sup is not None and hasattr(sup, "state"):
                self.add_state(dev, dev.capitalize(), _is_online(sup), device_class="connectivity")

    # -- lifecycle ---------------------------------------------------------------
    def attach(self) -> None:
        """Subscribe and hook into (re)connects; call before the publisher starts."""
        pub = self.publisher
        if self.commands is not None:
            self.commands.attach(_subscribe_fn(pub))
        for button, press in self._buttons.items():
            pub.subscribe(f"{pub.topics.base}/set/{button.key}", _on_press(button, press))
        self.discovery = Discovery(
            self.cfg.homeassistant,
            pub.topics,
            self.cfg.device_id,
            events=self._event_entities(),
            states=[state for state, _ in self._states.values()],
            commands=tuple(self.commands.commands.values()) if self.commands else (),
            metrics=self.stats.metrics,
            stats_topic=self.stats.topic,
            updates=self._updates,
            buttons=tuple(self._buttons),
            agent_id=self._agent_id,
            agent_status=self._agent_status,
        )
        self.discovery.attach(_publish_fn(pub), _subscribe_fn(pub))
        pub.add_connect_hook(self._on_connect)

    def _event_entities(self) -> list[EventEntity]:
        """One HA event entity per rule this config runs, with the intents it can carry."""
        rules = self.pipeline.rules
        claimed = claimed_intents(rules)
        unclaimed = tuple(i for i in self.cfg.intents if i not in claimed)
        return [
            EventEntity(r.TYPE, r.TYPE.replace("_", " ").capitalize(), r.entity_intents(unclaimed))
            for r in rules
        ]

    def _on_connect(self) -> None:
        self.discovery.publish(_publish_fn(self.publisher))
        if self.commands is not None:
            self.commands.publish_states()
        # States are read and published by the main loop only (tick), so no two threads
        # race on them; this just asks for a full republish.
        self._republish.set()

    def tick(self) -> None:
        """Call from the main loop: states on change, stats on their interval."""
        try:
            if self._republish.is_set():
                self._republish.clear()
                self._last.clear()
            self._publish_states()
            self.stats.maybe_publish()
        except PublishError as err:
            _LOGGER.warning("states/stats not published: %s", err)

    def _publish_states(self) -> None:
        for key, (_, read) in list(self._states.items()):
            try:
                on = read()
            except Exception:
                _LOGGER.exception("state %s failed", key)
                continue
            if self._last.get(key) != on:
                self._last[key] = on
                self.publisher.publish_state(key, "ON" if on else "OFF")

    # -- metrics that exist in the core --------------------------------------------
    def _add_core_metrics(self) -> None:
        p, pub, s = self.pipeline, self.publisher, self.stats
        s.add("fps", Rate(lambda: p.frames_seen), name="Frames per second", unit="fps")
        for stage, key, name in (
            ("vision_frame", "vision_ms", "Vision inference"),
            ("vad_chunk", "vad_ms", "VAD per chunk"),
            ("speech_segment", "speech_ms", "Speech per utterance"),
        ):
            s.add(
                key,
                recent_median_ms(partial(p.times.samples.get, stage)),
                name=name,
                unit="ms",
            )
        s.add("frames_buffered", lambda: len(p.frames), name="Frames buffered")
        s.add(
            "ring_mb",
            lambda: round(p.frames.nbytes() / 1e6, 2),
            name="Frame ring memory",
            unit="MB",
        )
        s.add("speech_segments", lambda: p.decisions.segments, name="Utterances", kind="counter")
        s.add("events", lambda: p.decisions.emitted, name="Events", kind="counter")
        s.add("mqtt_reconnects", lambda: pub.reconnects, name="MQTT reconnects", kind="counter")
        s.add("mqtt_published", lambda: pub.published, name="MQTT published", kind="counter")
        s.add(
            "mqtt_handler_errors",
            lambda: pub.handler_errors,
            name="MQTT handler errors",
            kind="counter",
        )
        depth = getattr(pub, "outbox_depth", None)  # the durable outbox, when there is one
        if depth is not None:
            s.add("outbox_depth", lambda: getattr(pub, "outbox_depth", None), name="Outbox depth")
        cmds = self.commands
        if cmds is not None:
            s.add(
                "commands_accepted",
                lambda: cmds.counters()["accepted"],
                name="Commands accepted",
                kind="counter",
            )
            s.add(
                "commands_rejected",
                lambda: cmds.counters()["rejected"],
                name="Commands rejected",
                kind="counter",
            )
