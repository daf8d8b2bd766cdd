"""Per-intent cooldown so one utterance heard twice is one event."""

from __future__ import annotations


class Cooldown:
    def __init__(self, seconds: float) -> None:
        self._span_ns = int(seconds * 1e9)
        self._last: dict[str, int] = {}

    def allow(self, key: str, t_ns: int) -> bool:
        last = self._last.get(key)
        if last is not None and t_ns - last < self._span_ns:
            return False
        self._last[key] = t_ns
        return True
