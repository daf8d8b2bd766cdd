"""Topic layout under <base_topic>/<device_id>/ (the outward contract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    base: str

    @classmethod
    def for_device(cls, base_topic: str, device_id: str) -> Topics:
        return cls(f"{base_topic}/{device_id}")

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def event(self, event_type: str) -> str:
        return f"{self.base}/event/{event_type}"

    def state(self, key: str) -> str:
        return f"{self.base}/state/{key}"
