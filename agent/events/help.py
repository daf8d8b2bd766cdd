"""The ``help_call`` event: a call for help heard while a person in view was lying down.

Same payload shape as ``voice_command`` (``agent.events.types.VoiceCommand``); the image
evidence says how many of the window's frames showed a person lying, and which models read
the pose. ``SCHEMA_DEF`` is this event's entry for ``event.schema.json``'s ``$defs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.events.types import (
    AudioEvidence,
    FusionInfo,
    _new_id,
    _now_iso,
    fused_fields,
    fused_payload,
)


@dataclass(frozen=True, slots=True)
class PoseEvidence:
    score: float  # x_image: fraction of frames with a person in which the person lies
    frames_analysed: int
    frames_with_person: int
    frames_lying: int
    posture: str  # most frequent posture among frames with a person
    model: str  # person detector name@version
    landmark_model: str  # pose landmark model name@version


@dataclass(frozen=True, slots=True)
class HelpCall:
    """A call for help ("help", "help me", …) while a person in view was lying down."""

    TYPE: ClassVar[str] = "help_call"

    device: str
    start: float
    end: float
    confidence: float
    intent: str
    text: str
    image: PoseEvidence
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
    def from_payload(cls, data: dict[str, Any]) -> HelpCall:
        return cls(**fused_fields(data, PoseEvidence))


_SCORE = {"$ref": "#/$defs/score"}
_MODEL = {"$ref": "#/$defs/model_ref"}
_COUNT = {"type": "integer", "minimum": 0}

# Drop-in for event.schema.json: add under "$defs" as "help_call" and to the top "oneOf".
SCHEMA_DEF: dict[str, Any] = {
    "description": "A call for help heard while a person in view was lying down.",
    "allOf": [{"$ref": "#/$defs/common"}],
    "type": "object",
    "required": ["intent", "text", "evidence", "fusion", "skew_ms"],
    "additionalProperties": False,
    "properties": {
        "v": True,
        "id": True,
        "device": True,
        "time": True,
        "start": True,
        "end": True,
        "confidence": True,
        "type": {"const": "help_call"},
        "intent": {
            "description": "Intent of the phrase ('help'), or 'scream' for a sound.",
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]{0,63}$",
        },
        "text": {"description": "Recognized phrase.", "type": "string", "maxLength": 200},
        "evidence": {
            "type": "object",
            "required": ["image", "audio"],
            "additionalProperties": False,
            "properties": {
                "image": {
                    "type": "object",
                    "required": [
                        "score",
                        "frames_analysed",
                        "frames_with_person",
                        "frames_lying",
                        "posture",
                        "model",
                        "landmark_model",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "score": {
                            "description": "Fraction of frames with a person where they lie.",
                            **_SCORE,
                        },
                        "frames_analysed": _COUNT,
                        "frames_with_person": _COUNT,
                        "frames_lying": _COUNT,
                        "posture": {"enum": ["standing", "sitting", "lying", "unknown", "none"]},
                        "model": _MODEL,
                        "landmark_model": _MODEL,
                    },
                },
                "audio": {
                    "type": "object",
                    "required": ["score", "text", "model", "vad_model", "vad_peak"],
                    "additionalProperties": False,
                    "properties": {
                        "score": _SCORE,
                        "text": {"type": "string", "maxLength": 200},
                        "model": _MODEL,
                        "vad_model": _MODEL,
                        "vad_peak": _SCORE,
                    },
                },
            },
        },
        "fusion": {
            "type": "object",
            "required": ["method", "alpha", "beta", "threshold", "score"],
            "additionalProperties": False,
            "properties": {
                "method": {"type": "string", "enum": ["weighted_sum"]},
                "alpha": _SCORE,
                "beta": _SCORE,
                "threshold": _SCORE,
                "score": _SCORE,
            },
        },
        "skew_ms": {
            "description": "Distance from the utterance midpoint to the nearest analysed frame.",
            "type": "number",
            "minimum": 0,
        },
    },
}
