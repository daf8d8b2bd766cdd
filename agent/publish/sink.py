"""Where events go: the Sink protocol and the in-package sinks (memory, JSON lines)."""

from __future__ import annotations

import json
import threading
from typing import Protocol, TextIO

from agent.events.registry import Event


class Sink(Protocol):
    def publish_event(self, event: Event) -> None: ...


class MemorySink:
    """Keeps events in a list (tests, demo without a broker)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def publish_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


class JsonLinesSink:
    """One JSON event per line (``replay`` on stdout)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def publish_event(self, event: Event) -> None:
        self._stream.write(json.dumps(event.to_payload(), separators=(",", ":")) + "\n")
        self._stream.flush()


class FanOut:
    def __init__(self, *sinks: Sink) -> None:
        self._sinks = sinks

    def publish_event(self, event: Event) -> None:
        for sink in self._sinks:
            sink.publish_event(event)
