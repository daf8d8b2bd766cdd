"""A small MQTT subscriber that collects what a hub would receive (demo and tests)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import PublishError

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float = 0.0  # time.time() on arrival, for latency figures

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """Subscribes at QoS 1 and keeps every message.

    ``durable=True`` uses a persistent session (clean_session false, a fixed ``client_id``):
    with a persistent broker, messages published while this subscriber is away (even across
    a broker restart) are queued for it. It reconnects within about a second.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        client_id: str | None = None,
        durable: bool = False,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topic = topic
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{id(self)}",
            clean_session=not durable,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def start(self, timeout: float = 10.0) -> Collector:
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise PublishError(f"could not subscribe to {self._topic} on {self._host}:{self._port}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        # paho closes its wake-up socket pair only in __del__; reinitialise() is the public way
        # to close it now instead of leaving it to the garbage collector.
        self._client.reinitialise()

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        try:
            if not reason.is_failure:
                client.subscribe(self._topic, qos=1)
        except Exception:
            _LOGGER.exception("collector on_connect")

    def _on_subscribe(self, client: mqtt.Client, u: Any, mid: int, reasons: Any, p: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time())
            )

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Messages on ``topic`` once at least ``count`` arrived (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.on(topic)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.on(topic)
