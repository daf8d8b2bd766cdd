"""Commands on ``<base>/set/<key>``: validated, applied to the run-time settings, echoed.

Contract (see README "Commands"):

- ``<base>/set/<key>`` with a plain-text payload: ``ON``/``OFF`` (also ``true``/``false``,
  ``1``/``0``) for switches, a JSON number for numbers. At most ``MAX_PAYLOAD`` bytes of UTF-8.
- An accepted value is applied and echoed, retained, to ``<base>/state/<key>`` (``ON``/``OFF``
  or the number). All states are published again after every (re)connect.
- A rejected one leaves the settings alone and is answered on ``<base>/error`` (QoS 0, not
  retained) with ``{"v": 1, "key", "error", "message", "time"}``; ``error`` is one of
  ``ERRORS``. The payload is never echoed back. Counters: ``accepted``, ``rejected``,
  ``rejected_by_reason``.

Handlers run on paho's network thread: they never block and never raise.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agent.core.settings import RuntimeSettings, Settings
from agent.errors import PublishError
from agent.events.registry import EVENT_TYPES

_LOGGER = logging.getLogger(__name__)

MAX_PAYLOAD = 64
"""Bytes; anything longer is rejected before it is decoded."""

ERRORS = (
    "unknown_key",
    "too_large",
    "invalid_utf8",
    "not_a_number",
    "not_a_switch_value",
    "wrong_type",
    "out_of_range",
)

PublishFn = Callable[[str, str | bytes, int, bool], None]
"""publish_raw(topic, payload, qos, retain)."""

Value = bool | float
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ON = {"on", "true", "1"}
_OFF = {"off", "false", "0"}


class CommandRejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Command:
    """One settable key. ``kind`` decides parsing and the Home Assistant entity."""

    key: str
    name: str
    kind: Literal["switch", "number"]
    read: Callable[[Settings], Value]
    apply: Callable[[RuntimeSettings, Value], object]
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01

    def parse(self, raw: bytes) -> Value:
        if len(raw) > MAX_PAYLOAD:
            raise CommandRejected("too_large", f"payload over {MAX_PAYLOAD} bytes")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CommandRejected("invalid_utf8", "payload is not UTF-8") from None
        if self.kind == "switch":
            low = text.lower()
            if low in _ON:
                return True
            if low in _OFF:
                return False
            raise CommandRejected("not_a_switch_value", "expected ON or OFF")
        try:
            value = json.loads(text)
        except ValueError:
            raise CommandRejected("not_a_number", "expected a JSON number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandRejected("wrong_type", f"expected a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise CommandRejected(
                "out_of_range", f"expected a number from {self.minimum:g} to {self.maximum:g}"
            )
        return number

    def format(self, value: Value) -> str:
        if self.kind == "switch":
            return "ON" if value else "OFF"
        return f"{float(value):g}"


def default_commands(event_types: Sequence[str] | None = None) -> tuple[Command, ...]:
    """Enable/disable per event type (those this agent can emit), fusion threshold, person
    requirement, face score."""

    def enable(event_type: str) -> Command:
        return Command(
            key=f"{event_type}_enabled",
            name=f"{event_type.replace('_', ' ').capitalize()} enabled",
            kind="switch",
            read=lambda s: s.is_enabled(event_type),
            apply=lambda rs, v: rs.set_enabled(event_type, bool(v)),
        )

    return (
        *(enable(t) for t in (event_types or [cls.TYPE for cls in EVENT_TYPES])),
        Command(
            key="fusion_threshold",
            name="Fusion threshold",
            kind="number",
            read=lambda s: s.fusion_threshold,
            apply=lambda rs, v: rs.update(fusion_threshold=float(v)),
        ),
        Command(
            key="vision_min_score",
            name="Person min score",
            kind="number",
            read=lambda s: s.vision_min_score,
            apply=lambda rs, v: rs.update(vision_min_score=float(v)),
        ),
        Command(
            key="require_person",
            name="Require person in view",
            kind="switch",
            read=lambda s: s.require_person,
            apply=lambda rs, v: rs.update(require_person=bool(v)),
        ),
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CommandHandler:
    """Subscribes to ``<base>/set/+``; applies, echoes, or answers with an error."""

    LOG_EVERY_S = 10.0

    def __init__(
        self,
        base_topic: str,
        settings: RuntimeSettings,
        publish: PublishFn,
        commands: tuple[Command, ...] | None = None,
        handled_elsewhere: tuple[str, ...] = (),
        persist_to: Path | None = None,
    ) -> None:
        self.base = base_topic
        self._elsewhere = frozenset(handled_elsewhere)  # keys another handler answers
        self.settings = settings
        self._publish = publish
        self.commands = {c.key: c for c in (commands or default_commands())}
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.rejected_by_reason: dict[str, int] = dict.fromkeys(ERRORS, 0)
        self._last_log = 0.0
        self._unlogged = 0
        self._persist_to = persist_to
        # What the config file says, before any saved value: a saved value stands only while
        # the file still says what it said when the value was set.
        start = self.settings.current
        self._config_text = {k: c.format(c.read(start)) for k, c in self.commands.items()}
        self._saved: dict[str, dict[str, str]] = {}
        if persist_to is not None:
            self._restore(persist_to)

    def _restore(self, path: Path) -> None:
        """Values set by earlier commands, validated again; a bad file is ignored, not fatal."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.warning("ignoring saved settings %s: %s", path, err)
            return
        if not isinstance(saved, dict):
            _LOGGER.warning("ignoring saved settings %s: not an object", path)
            return
        restored = []
        for key, entry in saved.items():
            cmd = self.commands.get(key)
            if cmd is None or not isinstance(entry, dict):
                continue
            text, was = entry.get("value"), entry.get("config")
            if not isinstance(text, str) or was != self._config_text.get(key):
                continue  # the config file changed this key since: the file wins
            try:
                cmd.apply(self.settings, cmd.parse(text.encode("utf-8")))
            except CommandRejected as err:
                _LOGGER.warning("ignoring saved setting %s=%r: %s", key, text, err)
                continue
            self._saved[key] = {"value": text, "config": str(was)}
            restored.append(f"{key}={text}")
        if restored:
            _LOGGER.info("restored settings from %s: %s", path, ", ".join(restored))

    def _save(self, key: str) -> None:
        """The values commands set (only those), with the config's value each overrode;
        atomically (temp file + rename)."""
        path = self._persist_to
        if path is None:
            return
        cmd = self.commands[key]
        self._saved[key] = {
            "value": cmd.format(cmd.read(self.settings.current)),
            "config": self._config_text[key],
        }
        data = self._saved
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as err:
            _LOGGER.warning("cannot save settings to %s: %s", path, err)

    @property
    def set_filter(self) -> str:
        return f"{self.base}/set/+"

    @property
    def error_topic(self) -> str:
        return f"{self.base}/error"

    def set_topic(self, key: str) -> str:
        return f"{self.base}/set/{key}"

    def state_topic(self, key: str) -> str:
        return f"{self.base}/state/{key}"

    def attach(self, subscribe: Callable[[str, Callable[[str, bytes], None]], None]) -> None:
        subscribe(self.set_filter, self.on_message)

    def publish_states(self) -> None:
        """Every settable value, retained on ``…/state/<key>`` (after each connect)."""
        now = self.settings.current
        for cmd in self.commands.values():
            self._send(self.state_topic(cmd.key), cmd.format(cmd.read(now)), retain=True)

    def on_message(self, topic: str, payload: bytes) -> None:
        prefix = f"{self.base}/set/"
        key = topic[len(prefix) :] if topic.startswith(prefix) else ""
        if key in self._elsewhere:
            return
        try:
            cmd = self.commands.get(key)
            if cmd is None:
                raise CommandRejected("unknown_key", "no such setting")
            value = cmd.parse(payload)
        except CommandRejected as err:
            self._reject(key if _KEY.match(key) else None, err)
            return
        cmd.apply(self.settings, value)
        self._save(key)
        with self._lock:
            self.accepted += 1
        _LOGGER.info("setting %s = %s (MQTT command)", key, cmd.format(value))
        self._send(self.state_topic(key), cmd.format(cmd.read(self.settings.current)), True)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"accepted": self.accepted, "rejected": self.rejected}

    def _reject(self, key: str | None, err: CommandRejected) -> None:
        with self._lock:
            self.rejected += 1
            self.rejected_by_reason[err.reason] += 1
        self._log_rejection(key, err)
        reply = {
            "v": 1,
            "key": key,
            "error": err.reason,
            "message": str(err),
            "time": _now_iso(),
        }
        # QoS 0: advisory, and a flood of replies must not queue acknowledgements.
        self._send(self.error_topic, json.dumps(reply, separators=(",", ":")), False, qos=0)

    def _log_rejection(self, key: str | None, err: CommandRejected) -> None:
        # A flood must not flood the journal: one line per LOG_EVERY_S, with a count.
        now = time.monotonic()
        if now - self._last_log < self.LOG_EVERY_S:
            self._unlogged += 1
            return
        _LOGGER.warning(
            "rejected MQTT command for %s: %s (%s); %d more rejected since the last report",
            key or "?",
            err.reason,
            err,
            self._unlogged,
        )
        self._last_log = now
        self._unlogged = 0

    def _send(self, topic: str, payload: str, retain: bool, qos: int = 1) -> None:
        try:
            self._publish(topic, payload, qos, retain)
        except PublishError as err:
            _LOGGER.warning("cannot publish %s: %s", topic, err)
