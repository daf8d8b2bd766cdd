"""Weighted-sum fusion of the image and audio scores of one utterance window."""

from __future__ import annotations

from dataclasses import dataclass

from agent.config.sections import FusionConfig


@dataclass(frozen=True, slots=True)
class Fused:
    score: float
    accepted: bool


class WeightedSum:
    """X = alpha * x_image + beta * x_audio, accepted at or above the threshold."""

    method = "weighted_sum"

    def __init__(self, cfg: FusionConfig) -> None:
        self.alpha = cfg.alpha
        self.beta = cfg.beta
        self.threshold = cfg.threshold

    @classmethod
    def of(cls, alpha: float, beta: float, threshold: float) -> WeightedSum:
        made = cls.__new__(cls)
        made.alpha, made.beta, made.threshold = alpha, beta, threshold
        return made

    def __call__(self, x_image: float, x_audio: float) -> Fused:
        score = self.alpha * x_image + self.beta * x_audio
        return Fused(score, score >= self.threshold)
