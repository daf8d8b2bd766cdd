"""Settings that change at run time (MQTT ``…/set/<key>``), read by the pipeline.

Writers replace an immutable snapshot under a lock; readers take ``current`` once per
decision, so one decision never sees half of a change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    """One consistent set of run-time settings."""

    enabled: MappingProxyType[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    fusion_threshold: float = 0.6
    require_person: bool = True
    vision_min_score: float = 0.6

    def is_enabled(self, event_type: str) -> bool:
        return self.enabled.get(event_type, True)


class RuntimeSettings:
    """Thread-safe holder of the current :class:`Settings`."""

    def __init__(self, initial: Settings | None = None) -> None:
        self._lock = threading.Lock()
        self._current = initial or Settings()

    @property
    def current(self) -> Settings:
        return self._current

    def update(self, **changes: Any) -> Settings:
        """Replace fields (``fusion_threshold=0.7``); returns the new snapshot."""
        with self._lock:
            self._current = replace(self._current, **changes)
            return self._current

    def set_enabled(self, event_type: str, on: bool) -> Settings:
        with self._lock:
            enabled = {**self._current.enabled, event_type: on}
            self._current = replace(self._current, enabled=MappingProxyType(enabled))
            return self._current
