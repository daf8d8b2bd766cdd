"""The processing core: audio drives, vision answers, fusion decides, events go to a sink.

Drivers (live capture, replay) feed frames and audio chunks in; nothing here knows where
they come from or where events go.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.config.sections import FusionConfig, VisionConfig, VoiceCommandConfig
from agent.core.media import AudioChunk, Frame
from agent.core.settings import RuntimeSettings, Settings
from agent.events.rules import Cooldown
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence, VoiceCommand
from agent.extractors.speech import IntentRecognizer
from agent.extractors.vad import Segmenter, SpeechSegment
from agent.fusion.weighted import WeightedSum
from agent.publish.sink import Sink
from agent.sync.ring import FrameRing, spread

_LOGGER = logging.getLogger(__name__)

# A camera that delivers nothing this long after the window closes does not hold up a decision.
CAMERA_GRACE_NS = 1_000_000_000


class PersonScorer(Protocol):
    def person_score(self, image_bgr: npt.NDArray[np.uint8]) -> float: ...


@dataclass
class StageTimes:
    """Per-stage wall milliseconds of the last ``KEEP`` calls, for stats and ``bench``."""

    KEEP = 1000  # bounded: the daemon runs for months

    samples: dict[str, deque[float]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, started_ns: int) -> None:
        ms = (time.perf_counter_ns() - started_ns) / 1e6
        self.samples.setdefault(stage, deque(maxlen=self.KEEP)).append(ms)
        self.totals[stage] = self.totals.get(stage, 0) + 1

    def median_ms(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.samples.items() if v}

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


@dataclass(frozen=True, slots=True)
class Models:
    """name@version of each model, quoted in event evidence."""

    vision: str
    vad: str


@dataclass
class Decisions:
    segments: int = 0
    rejected_speech: int = 0
    nobody_in_view: int = 0
    below_threshold: int = 0
    cooled_down: int = 0
    emitted: int = 0


class Pipeline:
    def __init__(
        self,
        *,
        device_id: str,
        frames: FrameRing,
        segmenter: Segmenter,
        recognizer: IntentRecognizer,
        scorer: PersonScorer,
        fuser: WeightedSum,
        vision_cfg: VisionConfig,
        fusion_cfg: FusionConfig,
        rule_cfg: VoiceCommandConfig,
        models: Models,
        sink: Sink,
        on_progress: Callable[[str], None] | None = None,
        settings: RuntimeSettings | None = None,
    ) -> None:
        self._device = device_id
        self.frames = frames
        self._segmenter = segmenter
        self._recognizer = recognizer
        self._scorer = scorer
        self._fuser = fuser
        self._vision = vision_cfg
        self._fusion = fusion_cfg
        self._rule = rule_cfg
        self._models = models
        self._sink = sink
        self._cooldown = Cooldown(rule_cfg.cooldown_s)
        self._pending: list[SpeechSegment] = []
        self._audio_ns = 0
        self._progress = on_progress or (lambda stage: None)
        self.times = StageTimes()
        self.decisions = Decisions()
        self.frames_seen = 0
        # Changed at run time by MQTT commands; read once per decision.
        self.settings = settings or RuntimeSettings(
            Settings(
                enabled=MappingProxyType({VoiceCommand.TYPE: rule_cfg.enabled}),
                fusion_threshold=fusion_cfg.threshold,
                require_person=rule_cfg.require_person,
                vision_min_score=vision_cfg.min_score,
            )
        )

    @property
    def window_after_s(self) -> float:
        """How long after an utterance its frames are still wanted."""
        return self._fusion.window_after_s

    def on_frame(self, frame: Frame) -> None:
        self.frames.push(frame)
        self.frames_seen += 1
        self._progress("camera")

    def on_audio(self, chunk: AudioChunk) -> None:
        started = time.perf_counter_ns()
        segments = list(self._segmenter.feed(chunk))
        self.times.add("vad_chunk", started)
        self._audio_ns = chunk.end_ns
        self._pending.extend(segments)
        self._resolve(final=False)
        self._progress("audio")

    def finish(self) -> None:
        """End of stream: close an open utterance and decide everything pending."""
        self._pending.extend(self._segmenter.flush())
        self._resolve(final=True)

    def _resolve(self, final: bool) -> None:
        latest = self.frames.latest_ns()
        keep: list[SpeechSegment] = []
        for seg in self._pending:
            need = seg.end_ns + int(self._fusion.window_after_s * 1e9)
            ready = latest is not None and latest >= need
            if final or ready or self._audio_ns - need > CAMERA_GRACE_NS:
                self._decide(seg)
            else:
                keep.append(seg)
        self._pending = keep

    def _decide(self, seg: SpeechSegment) -> None:
        self.decisions.segments += 1
        now = self.settings.current
        started = time.perf_counter_ns()
        rec = self._recognizer.recognize(seg.samples)
        self.times.add("speech_segment", started)
        span = f"{seg.start_ns / 1e9:.2f}-{seg.end_ns / 1e9:.2f}s"
        if rec.intent is None:
            self.decisions.rejected_speech += 1
            _LOGGER.info("speech %s is not a command (%s)", span, rec.reason or "no intent")
            return
        if not now.is_enabled(VoiceCommand.TYPE):
            return
        lo = seg.start_ns - int(self._fusion.window_before_s * 1e9)
        hi = seg.end_ns + int(self._fusion.window_after_s * 1e9)
        chosen = spread(self.frames.window(lo, hi), self._vision.max_frames_per_window)
        scores = []
        for frame in chosen:
            started = time.perf_counter_ns()
            scores.append(self._scorer.person_score(frame.image))
            self.times.add("vision_frame", started)
        in_view = [s for s in scores if s >= now.vision_min_score]
        # Mean over the window: someone present the whole utterance scores high,
        # someone glimpsed for one frame scores low.
        x_image = sum(in_view) / len(scores) if scores else 0.0
        fused = self._fuser(x_image, rec.confidence)
        if now.require_person and not in_view:
            self.decisions.nobody_in_view += 1
            _LOGGER.info(
                "heard %r (%s) at %s but nobody was in view (%d frames)",
                rec.text,
                rec.intent,
                span,
                len(scores),
            )
            return
        if fused.score < now.fusion_threshold:
            self.decisions.below_threshold += 1
            _LOGGER.info(
                "heard %r at %s: fused %.2f < %.2f (image %.2f, audio %.2f)",
                rec.text,
                span,
                fused.score,
                now.fusion_threshold,
                x_image,
                rec.confidence,
            )
            return
        if not self._cooldown.allow(rec.intent, seg.start_ns):
            self.decisions.cooled_down += 1
            return
        mid = (seg.start_ns + seg.end_ns) // 2
        # No frame at all (camera down, require_person off): the skew is unknown.
        skew_ms = min((abs(f.t_ns - mid) / 1e6 for f in chosen), default=-1.0)
        event = VoiceCommand(
            device=self._device,
            start=seg.start_ns / 1e9,
            end=seg.end_ns / 1e9,
            confidence=fused.score,
            intent=rec.intent,
            text=rec.text,
            image=ImageEvidence(
                score=round(x_image, 4),
                frames_analysed=len(scores),
                frames_with_person=len(in_view),
                model=self._models.vision,
            ),
            audio=AudioEvidence(
                score=round(rec.confidence, 4),
                text=rec.text,
                model=rec.model,
                vad_model=self._models.vad,
                vad_peak=round(seg.peak_probability, 4),
            ),
            fusion=FusionInfo(
                method=self._fuser.method,
                alpha=self._fuser.alpha,
                beta=self._fuser.beta,
                threshold=now.fusion_threshold,
                score=round(fused.score, 4),
            ),
            skew_ms=skew_ms,
        )
        self.decisions.emitted += 1
        _LOGGER.info(
            "voice_command %s (%r) at %s, confidence %.2f", rec.intent, rec.text, span, fused.score
        )
        self._sink.publish_event(event)
