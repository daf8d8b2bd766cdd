"""Periodic ``<base>/stats``: one flat JSON object of numbers, from registered metrics.

Payload: ``{"v": 1, "time": ISO-8601 UTC, "uptime_s": n, <metric key>: number | null, ...}``.
Components add their own metrics with :meth:`Stats.add` (a name, a unit and a reader);
Home Assistant discovery turns each one into a ``sensor``.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from agent.errors import PublishError

_LOGGER = logging.getLogger(__name__)

Number = int | float
PublishFn = Callable[[str, str | bytes, int, bool], None]


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    read: Callable[[], Number | None]
    unit: str | None = None
    kind: Literal["gauge", "counter"] = "gauge"
    enabled_by_default: bool = True
    """Whether Home Assistant shows the sensor without the user enabling it."""


class Rate:
    """Per-second rate of a growing counter between two reads."""

    def __init__(self, count: Callable[[], int], clock: Callable[[], float] = time.monotonic):
        self._count = count
        self._clock = clock
        self._last = (clock(), count())

    def __call__(self) -> float:
        now, n = self._clock(), self._count()
        then, before = self._last
        self._last = (now, n)
        return round((n - before) / (now - then), 2) if now > then else 0.0


def recent_median_ms(
    samples: Callable[[], Sequence[float] | None], last: int = 50
) -> Callable[[], float | None]:
    """Median of the newest ``last`` samples, or None before the first one."""

    def read() -> float | None:
        values = samples()
        if not values:
            return None
        # Another thread appends: copy first (one C call, atomic under the GIL); iterating a
        # deque while it grows raises RuntimeError.
        copy: Sequence[float] = values.copy() if isinstance(values, list | deque) else list(values)
        recent = list(itertools.islice(reversed(copy), last))
        return round(float(statistics.median(recent)), 3)

    return read


class Stats:
    def __init__(
        self,
        topic: str,
        publish: PublishFn,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self._publish = publish
        self.interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._next = self._started
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()
        self.published = 0

    def add(
        self,
        key: str,
        read: Callable[[], Number | None],
        *,
        name: str,
        unit: str | None = None,
        kind: Literal["gauge", "counter"] = "gauge",
        enabled_by_default: bool = True,
    ) -> None:
        """Register a metric (a hook for any component); call before discovery is published."""
        with self._lock:
            self._metrics[key] = Metric(key, name, read, unit, kind, enabled_by_default)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        with self._lock:
            return tuple(self._metrics.values())

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {
            "v": 1,
            "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "uptime_s": round(self._clock() - self._started, 1),
        }
        for m in self.metrics:
            try:
                out[m.key] = m.read()
            except Exception:  # a broken reader must not stop the others
                _LOGGER.exception("stats metric %s failed", m.key)
                out[m.key] = None
        return out

    def maybe_publish(self) -> bool:
        """Publish when the interval has passed (call it often; cheap otherwise)."""
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        self.publish()
        return True

    def publish(self) -> None:
        payload = json.dumps(self.snapshot(), separators=(",", ":"))
        try:
            self._publish(self.topic, payload, 0, False)
            self.published += 1
        except PublishError as err:
            _LOGGER.warning("stats not published: %s", err)
