"""Typed events with a stable wire name and schema version."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

SCHEMA_VERSION = 1


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class ImageEvidence:
    score: float
    frames_analysed: int
    frames_with_person: int
    model: str


@dataclass(frozen=True, slots=True)
class AudioEvidence:
    score: float
    text: str
    model: str
    vad_model: str
    vad_peak: float


@dataclass(frozen=True, slots=True)
class FusionInfo:
    method: str
    alpha: float
    beta: float
    threshold: float
    score: float


@dataclass(frozen=True, slots=True)
class VoiceCommand:
    """An intent spoken while a person was in view."""

    TYPE: ClassVar[str] = "voice_command"

    device: str
    start: float
    end: float
    confidence: float
    intent: str
    text: str
    image: ImageEvidence
    audio: AudioEvidence
    fusion: FusionInfo
    skew_ms: float
    id: str = field(default_factory=_new_id)
    time: str = field(default_factory=_now_iso)

    @property
    def type(self) -> str:
        return self.TYPE

    def to_payload(self) -> dict[str, Any]:
        return fused_payload(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> VoiceCommand:
        return cls(**fused_fields(data, ImageEvidence))


@dataclass(frozen=True, slots=True)
class WakeWord(VoiceCommand):
    """A wake word heard while a person was in view (``intent`` is the model's name).

    Same fields and wire form as ``voice_command``; only the wire name differs.
    """

    TYPE: ClassVar[str] = "wake_word"


def fused_payload(event: Any) -> dict[str, Any]:
    """The wire form shared by the fused events (voice_command, help_call, wake_word)."""
    return {
        "v": SCHEMA_VERSION,
        "id": event.id,
        "type": event.TYPE,
        "device": event.device,
        "time": event.time,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "confidence": round(event.confidence, 4),
        "intent": event.intent,
        "text": event.text,
        "evidence": {"image": asdict(event.image), "audio": asdict(event.audio)},
        "fusion": asdict(event.fusion),
        "skew_ms": round(event.skew_ms, 1),
    }


def fused_fields(data: dict[str, Any], image_cls: type[Any]) -> dict[str, Any]:
    """Constructor arguments of a fused event from its wire form."""
    ev = data["evidence"]
    return {
        "device": data["device"],
        "start": data["start"],
        "end": data["end"],
        "confidence": data["confidence"],
        "intent": data["intent"],
        "text": data["text"],
        "image": image_cls(**ev["image"]),
        "audio": AudioEvidence(**ev["audio"]),
        "fusion": FusionInfo(**data["fusion"]),
        "skew_ms": data["skew_ms"],
        "id": data["id"],
        "time": data["time"],
    }
