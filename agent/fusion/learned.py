"""Learned fusion: alpha/beta fitted on data, and an int8 head over both modalities' features.

Both come out of ``edge-agent train --fusion`` in one store bundle (``fusion_head_int8``):

* ``postprocess.weighted_sum``: alpha, beta and a threshold fitted by logistic regression on
  (x_image, x_audio), scaled so that alpha + beta = 1 — the weighted sum with learned weights
  (``fusion.method: learned_weights``).
* the ONNX head (``fusion.method: learned_head``): a small MLP over :data:`FEATURES`, quantized
  int8. Its probability is mapped piecewise-linearly so that the threshold tuned at training
  time lands on ``fusion.threshold``'s default (0.6); the run-time threshold (MQTT, SIGHUP)
  then moves around the trained operating point.

The head sees the recognizer's posterior even when the recognizer alone would reject the
utterance, so a person facing the device can lower the audio bar, and one turned away (or
nobody) can raise it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.errors import ModelError
from agent.fusion.weighted import Fused, WeightedSum

if TYPE_CHECKING:
    from agent.config.sections import FusionConfig
    from agent.extractors.speech import Recognition
    from agent.models.store import Manifest
    from agent.rules.base import PersonEvidence
    from agent.runtimes.base import Session

_LOGGER = logging.getLogger(__name__)

# The order is the head's input layout; the bundle's manifest must list the same names.
FEATURES: tuple[str, ...] = (
    "p_phrase",  # probability of the best configured phrase (below the threshold too)
    "p_other",  # probability of "not a command"
    "margin",  # p_phrase minus the best other label
    "x_image",  # mean face score over the window (0 for frames without a face)
    "face_frac",  # fraction of the window's frames with a face in view
    "face_height",  # face height / image height, mean over frames with a face
    "facing",  # 1 = turned to the device, 0 = profile, mean over frames with a face
)
OPERATING_POINT = 0.6  # where the head's tuned threshold lands (fusion.threshold's default)


def features(rec: Recognition, person: PersonEvidence) -> npt.NDArray[np.float32]:
    """One utterance's feature vector, in :data:`FEATURES` order."""
    post = rec.posterior
    if post is not None:
        audio = (post.p, post.p_other, post.margin)
    else:  # engines without class probabilities: their confidence stands in
        audio = (rec.confidence, 1.0 - rec.confidence, 2.0 * rec.confidence - 1.0)
    frac = person.with_person / person.analysed if person.analysed else 0.0
    return np.array(
        [*audio, person.x_image, frac, person.face_height, person.facing], dtype=np.float32
    )


class Fuser(Protocol):
    """What the voice_command rule fuses with."""

    method: str
    alpha: float
    beta: float
    wants_candidates: bool  # also decide utterances the recognizer alone rejected

    def fuse(self, rec: Recognition, person: PersonEvidence) -> Fused: ...


class WeightedFuser:
    """X = alpha·x_image + beta·x_audio (hand-set from config, or learned from a bundle)."""

    wants_candidates = False

    def __init__(
        self,
        weights: WeightedSum,
        method: str = "weighted_sum",
        calibrate_at: float | None = None,
    ) -> None:
        self._weights = weights
        self.method = method
        self.alpha = weights.alpha
        self.beta = weights.beta
        # Learned weights come with their own threshold: the sum is mapped so that it lands
        # on OPERATING_POINT, where the run-time fusion threshold sits by default.
        self._calibrate_at = calibrate_at

    def fuse(self, rec: Recognition, person: PersonEvidence) -> Fused:
        fused = self._weights(person.x_image, rec.confidence)
        if self._calibrate_at is None:
            return fused
        score = calibrate(fused.score, self._calibrate_at)
        return Fused(score, score >= OPERATING_POINT)


@dataclass(frozen=True, slots=True)
class HeadSpec:
    threshold: float  # head probability at the trained operating point
    alpha: float
    beta: float
    weighted_threshold: float
    candidate_floor: float  # below this phrase probability an utterance is not reconsidered

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> HeadSpec:
        post: Mapping[str, Any] = manifest.postprocess
        listed = tuple(manifest.preprocess.get("features", ()))
        if listed != FEATURES:
            raise ModelError(
                f"{manifest.ref}: features {list(listed)} differ from this agent's "
                f"{list(FEATURES)}; retrain with this version's `edge-agent train --fusion`"
            )
        try:
            ws = post["weighted_sum"]
            spec = cls(
                threshold=float(post["threshold"]),
                alpha=float(ws["alpha"]),
                beta=float(ws["beta"]),
                weighted_threshold=float(ws["threshold"]),
                candidate_floor=float(post.get("candidate_floor", 0.05)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{manifest.ref}: bad fusion postprocess: {err}") from err
        for name in ("threshold", "alpha", "beta", "weighted_threshold", "candidate_floor"):
            value = getattr(spec, name)
            if not 0.0 <= value <= 1.0:
                raise ModelError(f"{manifest.ref}: {name} {value} outside 0..1")
        if not 0.0 < spec.threshold < 1.0:
            raise ModelError(f"{manifest.ref}: threshold must be inside (0, 1)")
        return spec

    def weights(self) -> WeightedSum:
        return WeightedSum.of(self.alpha, self.beta, self.weighted_threshold)


def calibrate(p: float, threshold: float) -> float:
    """Piecewise-linear: 0 → 0, ``threshold`` → OPERATING_POINT, 1 → 1."""
    if p >= threshold:
        return OPERATING_POINT + (1.0 - OPERATING_POINT) * (p - threshold) / (1.0 - threshold)
    return OPERATING_POINT * p / threshold


class HeadFuser:
    """The int8 fusion head: probability that the utterance is a command for the device."""

    method = "learned_head"
    wants_candidates = True

    def __init__(self, session: Session, spec: HeadSpec, ref: str) -> None:
        if len(session.inputs) != 1:
            raise ModelError(f"{ref}: expected one input, got {len(session.inputs)}")
        shape = session.inputs[0].shape
        if len(shape) != 2 or shape[-1] != len(FEATURES):
            raise ModelError(f"{ref}: input shape {shape} does not take {len(FEATURES)} features")
        self._session = session
        self._input = session.inputs[0].name
        self.spec = spec
        self.ref = ref
        # alpha/beta reported in the event's fusion block: the learned weights of the same bundle.
        self.alpha = spec.alpha
        self.beta = spec.beta
        self.candidate_floor = spec.candidate_floor

    def probability(self, x: npt.NDArray[np.float32]) -> float:
        out = self._session.run({self._input: x.reshape(1, -1).astype(np.float32)})
        p = float(np.asarray(next(iter(out.values()))).reshape(-1)[0])
        if not np.isfinite(p):
            raise ModelError(f"{self.ref}: non-finite output")
        return min(max(p, 0.0), 1.0)

    def fuse(self, rec: Recognition, person: PersonEvidence) -> Fused:
        score = calibrate(self.probability(features(rec, person)), self.spec.threshold)
        return Fused(score, score >= OPERATING_POINT)


def build_fuser(cfg: FusionConfig, load: Any) -> Fuser:
    """``load(name) -> (session, manifest)`` from the model store, or raises ModelError.

    ``auto`` takes the trained head when its bundle is installed, else the hand-set weights.
    """
    hand = WeightedFuser(WeightedSum(cfg))
    if cfg.method == "weighted_sum":
        return hand
    try:
        session, manifest = load(cfg.model)
        spec = HeadSpec.from_manifest(manifest)
    except ModelError as err:
        if cfg.method == "auto":
            _LOGGER.info("fusion: hand-set weights (%s)", err)
            return hand
        raise
    if cfg.method == "learned_weights":
        return WeightedFuser(spec.weights(), "learned_weights", spec.weighted_threshold)
    _LOGGER.info("fusion: learned head %s", manifest.ref)
    return HeadFuser(session, spec, manifest.ref)
