"""MQTT publisher (paho-mqtt 2): status with last will, events at QoS 1.

Every paho callback is guarded: an exception inside one would kill paho's network thread
while ``is_connected()`` keeps saying True.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config.mqtt import MqttConfig
from agent.errors import ConfigError, PublishError
from agent.events.types import Event
from agent.publish.topics import Topics

_LOGGER = logging.getLogger(__name__)

ONLINE, OFFLINE, STOPPED = "online", "offline", "stopped"

MessageHandler = Callable[[str, bytes], None]
"""Called on paho's network thread with (topic, payload); must not block."""


def _read_password(cfg: MqttConfig) -> str | None:
    if cfg.password_file is not None:
        try:
            return cfg.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as err:
            # Name the key and the file, never the content.
            raise ConfigError(
                [f"mqtt.password_file: cannot read {cfg.password_file}: {err}"]
            ) from None
    return cfg.password.get_secret_value() if cfg.password is not None else None


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, device_id: str) -> None:
        self._cfg = cfg
        self.topics = Topics.for_device(cfg.base_topic, device_id)
        self._connected = threading.Event()
        self._pending: dict[int, mqtt.MQTTMessageInfo] = {}
        self._lock = threading.Lock()
        self.reconnects = 0
        self.published = 0
        self._closing = False
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._connect_hooks: list[Callable[[], None]] = []
        self.handler_errors = 0
        self.progress_ns = time.monotonic_ns()
        client_id = cfg.client_id or f"edge-agent-{device_id}"
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if cfg.username:
            self._client.username_pw_set(cfg.username, _read_password(cfg))
        self._client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Connect in the background; wait up to ``timeout`` for the first CONNACK."""
        try:
            self._client.connect_async(
                self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive
            )
        except (OSError, ValueError) as err:
            raise PublishError(
                f"cannot connect to {self._cfg.host}:{self._cfg.port}: {err}"
            ) from err
        self._client.loop_start()
        if not self._connected.wait(timeout):
            _LOGGER.warning(
                "MQTT broker %s:%d not reachable yet; retrying in the background",
                self._cfg.host,
                self._cfg.port,
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def network_alive(self) -> bool:
        thread = getattr(self._client, "_thread", None)
        return thread is not None and thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Publish ``stopped``, wait for outstanding QoS 1 acks, disconnect."""
        self._closing = True
        if self.connected:
            info = self._client.publish(self.topics.status, STOPPED, qos=1, retain=True)
            self._wait(info, timeout)
        self.flush(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        # paho closes its wake-up socket pair only in __del__; reinitialise() is the public way
        # to close it now instead of leaving it to the garbage collector.
        self._client.reinitialise()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event published so far is acknowledged (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        with self._lock:
            left = len(self._pending)
        _LOGGER.warning("%d MQTT messages not acknowledged after %.1f s", left, timeout)
        return False

    @staticmethod
    def _wait(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as err:
            _LOGGER.warning("status not published: %s", err)

    # -- publishing ------------------------------------------------------------
    def publish_event(self, event: Event) -> None:
        payload = json.dumps(event.to_payload(), separators=(",", ":"))
        for topic in (self.topics.events, self.topics.event(event.type)):
            self._publish(topic, payload, self._cfg.qos, retain=False)

    def publish_state(self, key: str, value: str) -> None:
        self._publish(self.topics.state(key), value, 1, retain=True)

    def publish_raw(
        self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Any topic (e.g. Home Assistant discovery); QoS>0 messages are tracked until acked."""
        self._publish(topic, payload, qos, retain)

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now (if connected) and again after every reconnect."""
        self._subscriptions[topic] = (qos, handler)
        if self.connected:
            self._client.subscribe(topic, qos=qos)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Run on paho's thread after every (re)connect, once ``online`` is published."""
        self._connect_hooks.append(hook)

    def _publish(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise PublishError("MQTT queue full")
        if qos > 0:
            with self._lock:
                self._pending[info.mid] = info
        self.published += 1

    # -- paho callbacks (network thread) ---------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                _LOGGER.error("MQTT connection refused: %s", reason)
                return
            if self._connected.is_set() or self.reconnects:
                _LOGGER.info("MQTT reconnected to %s:%d", self._cfg.host, self._cfg.port)
            else:
                _LOGGER.info("MQTT connected to %s:%d", self._cfg.host, self._cfg.port)
            client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            for topic, (qos, _) in self._subscriptions.items():
                client.subscribe(topic, qos=qos)
            self._connected.set()
            self.progress_ns = time.monotonic_ns()
            for hook in self._connect_hooks:
                hook()
        except Exception:
            _LOGGER.exception("error in MQTT on_connect")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # A raising handler would kill paho's network thread: count it and carry on.
        try:
            for pattern, (_, handler) in self._subscriptions.items():
                if mqtt.topic_matches_sub(pattern, msg.topic):
                    handler(msg.topic, bytes(msg.payload))
        except Exception:
            self.handler_errors += 1
            _LOGGER.exception("error handling MQTT message on %s", msg.topic)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if self._connected.is_set() and not self._closing:
                self.reconnects += 1
                _LOGGER.warning("MQTT disconnected: %s", reason)
            self._connected.clear()
        except Exception:
            _LOGGER.exception("error in MQTT on_disconnect")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        try:
            with self._lock:
                self._pending.pop(mid, None)
            self.progress_ns = time.monotonic_ns()
        except Exception:
            _LOGGER.exception("error in MQTT on_publish")
