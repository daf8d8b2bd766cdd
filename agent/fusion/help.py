"""Fusion for ``help_call``: a call for help heard while a person in view is lying down.

Pure (no models, no clock): the rule hands it what the window produced.

* **x_audio**: the recognizer's confidence when the utterance is a call for help (the
  configured help intent, whatever it is named, or one of its phrases as whole words in the
  text), else the scream score when one is given, else 0.
* **x_image**: the fraction of the window's frames *with a person* in which the person is
  ``lying`` (``unknown`` / ``sitting`` / ``standing`` count as not lying; frames without a
  person are not counted).
* Fires when both gates hold (a call for help or scream at or above ``min_audio``, and at
  least ``min_lying_frames`` lying frames) and the fused score ``alpha·x_image + beta·x_audio``
  is at or above ``threshold``, like ``agent.fusion.weighted.WeightedSum``. The gates keep a
  loud "help" from a standing person, and a person lying in silence, from ever adding up to an
  event, whatever the weights.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.config.sections import FusionConfig
from agent.extractors.pose import Posture


@dataclass(frozen=True, slots=True)
class HelpDecision:
    accepted: bool
    confidence: float  # alpha * x_image + beta * x_audio
    x_image: float
    x_audio: float
    frames: int
    frames_with_person: int
    frames_lying: int
    posture: Posture | None  # most frequent posture among frames with a person
    reason: str


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def is_help_phrase(text: str, phrases: Iterable[str]) -> bool:
    """True when ``text`` contains one of ``phrases`` as whole words."""
    words = _words(text)
    joined = f" {' '.join(words)} "
    return any(f" {' '.join(_words(p))} " in joined for p in phrases if _words(p))


class HelpFusion:
    """Decide ``help_call`` for one utterance window."""

    method = "weighted_sum"

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        threshold: float = 0.6,
        *,
        min_lying_frames: int = 2,
        min_audio: float = 0.3,
        intent: str = "help",
        phrases: Sequence[str] = ("help", "help me"),
    ) -> None:
        for name, value in (
            ("alpha", alpha),
            ("beta", beta),
            ("threshold", threshold),
            ("min_audio", min_audio),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"help rule: {name} must be within 0..1, got {value}")
        if min_lying_frames < 1:
            raise ValueError(f"help rule: min_lying_frames must be >= 1, got {min_lying_frames}")
        self.alpha = alpha
        self.beta = beta
        self.threshold = threshold
        self.min_lying_frames = min_lying_frames
        self.min_audio = min_audio
        self.intent = intent
        self.phrases = tuple(phrases)

    @classmethod
    def from_fusion(
        cls,
        cfg: FusionConfig,
        min_lying_frames: int = 2,
        *,
        intent: str = "help",
        phrases: Sequence[str] = ("help", "help me"),
        min_audio: float = 0.3,
        threshold: float | None = None,
    ) -> HelpFusion:
        """The voice-command fusion's weights; its threshold unless ``threshold`` is given."""
        return cls(
            cfg.alpha,
            cfg.beta,
            cfg.threshold if threshold is None else threshold,
            min_lying_frames=min_lying_frames,
            min_audio=min_audio,
            intent=intent,
            phrases=phrases,
        )

    def audio_score(
        self, intent: str | None, text: str, speech_score: float, scream: float | None = None
    ) -> float:
        """x_audio: speech confidence for a help phrase, else the scream score, else 0."""
        phrase = intent == self.intent or is_help_phrase(text, self.phrases)
        score = speech_score if phrase else 0.0
        if scream is not None:
            score = max(score, scream)
        return min(max(score, 0.0), 1.0)

    def __call__(
        self,
        postures: Sequence[Posture | None],
        *,
        intent: str | None,
        text: str,
        speech_score: float,
        scream: float | None = None,
        threshold: float | None = None,
    ) -> HelpDecision:
        """``postures``: one entry per analysed frame of the window, None = nobody in view.

        ``threshold`` overrides the configured one (run-time changes via SIGHUP or MQTT).
        """
        limit = self.threshold if threshold is None else threshold
        x_audio = self.audio_score(intent, text, speech_score, scream)
        seen = [p for p in postures if p is not None]
        lying = sum(1 for p in seen if p == "lying")
        x_image = lying / len(seen) if seen else 0.0
        score = self.alpha * x_image + self.beta * x_audio
        common = Counter(seen).most_common(1)
        posture: Posture | None = common[0][0] if common else None
        if x_audio < self.min_audio or x_audio == 0.0:
            accepted, reason = False, "no call for help heard"
        elif lying < self.min_lying_frames:
            accepted, reason = False, "nobody lying in view" if seen else "nobody in view"
        elif score < limit:
            accepted, reason = False, f"fused score {score:.2f} below {limit:.2f}"
        else:
            accepted, reason = True, f"help while lying in {lying}/{len(seen)} frames"
        return HelpDecision(
            accepted=accepted,
            confidence=round(score, 4),
            x_image=x_image,
            x_audio=x_audio,
            frames=len(postures),
            frames_with_person=len(seen),
            frames_lying=lying,
            posture=posture,
            reason=reason,
        )
