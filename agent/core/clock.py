"""The one clock. Live sources stamp on ``time.monotonic_ns()``; replay on media time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class MonotonicClock:
    """Wall-independent capture clock used by live sources."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock that only moves when told to (replay and tests)."""

    def __init__(self, start_ns: int = 0) -> None:
        self._t = start_ns

    def now_ns(self) -> int:
        return self._t

    def set_ns(self, t_ns: int) -> None:
        self._t = max(self._t, t_ns)
