"""``wake_word``: a wake word heard while a person was in view (``intent`` = model name).

Trigger: every audio chunk goes to the microWakeWord detectors; vision answers only when one
fires. Evidence: the person score of frames from ``wakeword.window_s`` before the detection.
Fusion: the voice-command fusion, with ``wakeword.require_person``.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.config.sections import WakeWordConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.events.types import AudioEvidence, WakeWord
from agent.extractors.wakeword import Detection
from agent.fusion.weighted import WeightedSum
from agent.rules.base import Parts, Rule, RuleContext, VadState, fusion_info

_LOGGER = logging.getLogger(__name__)


class WakeDetector(Protocol):
    def process(self, chunk: npt.NDArray[np.int16]) -> list[Detection]: ...


class WakeWordRule(Rule):
    TYPE = WakeWord.TYPE

    def __init__(
        self,
        ctx: RuleContext,
        cfg: WakeWordConfig,
        *,
        detector: WakeDetector,
        refs: dict[str, str],
        phrases: dict[str, str],
        fuser: WeightedSum,
        max_frames: int,
        vad_peak: VadState,
    ) -> None:
        super().__init__(ctx, cfg.enabled)
        self._detector = detector
        self._refs = refs  # model name -> name@version
        self._phrases = phrases  # model name -> spoken phrase
        self._require_person = cfg.require_person
        self._window_s = cfg.window_s
        self._fuser = fuser
        self._max_frames = max_frames
        self._vad_peak = vad_peak
        self._fed = 0  # samples fed to the detector

    def entity_intents(self, unclaimed: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(self._refs)

    def on_audio(self, chunk: AudioChunk) -> None:
        started = time.perf_counter_ns()
        found = self._detector.process(chunk.samples)
        self._fed += len(chunk.samples)
        self.ctx.times.add("wakeword_chunk", started)
        for det in found:
            if self.ctx.settings.current.is_enabled(self.TYPE):
                # Stamp from this chunk (not from the stream start): gaps after a microphone
                # reopen and clock drift must not shift the detection into the past.
                behind = self._fed - round(det.t_offset * AUDIO_RATE)
                self._decide(det, chunk.end_ns - behind * 1_000_000_000 // AUDIO_RATE)

    def _decide(self, det: Detection, t_ns: int) -> None:
        ctx = self.ctx
        now = ctx.settings.current
        lo = max(0, t_ns - int(self._window_s * 1e9))
        chosen = ctx.frames_between(lo, t_ns, self._max_frames)
        person = ctx.person_in_view(chosen)
        fused = self._fuser(person.x_image, det.probability)
        span = f"{lo / 1e9:.2f}-{t_ns / 1e9:.2f}s"
        if self._require_person and not person.with_person:
            ctx.decisions.nobody_in_view += 1
            ctx.note(self.TYPE, lo, t_ns, "nobody_in_view", det.name)
            _LOGGER.info("wake word %s at %s but nobody was in view", det.name, span)
            return
        if fused.score < now.fusion_threshold:
            ctx.decisions.below_threshold += 1
            ctx.note(self.TYPE, lo, t_ns, "below_threshold", f"{det.name} {fused.score:.2f}")
            _LOGGER.info("wake word %s at %s: fused %.2f too low", det.name, span, fused.score)
            return
        phrase = self._phrases.get(det.name, det.name)
        event = WakeWord(
            device=ctx.device,
            start=lo / 1e9,
            end=t_ns / 1e9,
            confidence=fused.score,
            intent=det.name,
            text=phrase,
            image=person.evidence(),
            audio=AudioEvidence(
                score=round(det.probability, 4),
                text=phrase,
                model=self._refs.get(det.name, det.name),
                vad_model=ctx.models.vad,
                vad_peak=round(self._vad_peak.last_probability, 4),
            ),
            fusion=fusion_info(self._fuser, now.fusion_threshold, fused.score),
            skew_ms=min((abs(f.t_ns - t_ns) / 1e6 for f in chosen), default=-1.0),
        )
        ctx.emit(event, span)


def build(cfg: AgentConfig, ctx: RuleContext, parts: Parts) -> WakeWordRule | None:
    """None unless ``wakeword.enabled`` (its models load only then)."""
    if not cfg.wakeword.enabled:
        return None
    from agent.extractors.wakeword import WakeWordDetector, WakeWordParams

    models = []
    refs: dict[str, str] = {}
    phrases: dict[str, str] = {}
    for name in cfg.wakeword.models:
        # Streaming state lives in the interpreter: never shared with another room.
        session, manifest = parts.store.load(
            f"wakeword_{name}", runtimes=cfg.runtimes, stateful=True
        )
        params = WakeWordParams.from_manifest(name, manifest.preprocess, manifest.postprocess)
        models.append((session, params))
        refs[name], phrases[name] = manifest.ref, params.phrase
    return WakeWordRule(
        ctx,
        cfg.wakeword,
        detector=WakeWordDetector(models, refractory_s=cfg.wakeword.refractory_s),
        refs=refs,
        phrases=phrases,
        fuser=parts.weights,
        max_frames=cfg.vision.max_frames_per_window,
        vad_peak=parts.vad,
    )
