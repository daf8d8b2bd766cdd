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

from agent.config.sections import (
    FusionConfig,
    PresenceConfig,
    VisionConfig,
    VoiceCommandConfig,
)
from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.core.settings import RuntimeSettings, Settings
from agent.events.help import HelpCall, PoseEvidence
from agent.events.registry import Event
from agent.events.rules import Cooldown
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence, VoiceCommand, WakeWord
from agent.extractors.pose import Pose
from agent.extractors.speech import IntentRecognizer, Recognition
from agent.extractors.vad import Segmenter, SpeechSegment
from agent.extractors.wakeword import Detection as WakeDetection
from agent.fusion.help import HelpRule
from agent.fusion.weighted import WeightedSum
from agent.publish.sink import Sink
from agent.sync.ring import FrameRing, spread

_LOGGER = logging.getLogger(__name__)

# A camera that delivers nothing this long after the window closes does not hold up a decision.
CAMERA_GRACE_NS = 1_000_000_000


class PersonScorer(Protocol):
    def person_score(self, image_bgr: npt.NDArray[np.uint8]) -> float: ...


class PoseReader(Protocol):
    def estimate(self, image_bgr: npt.NDArray[np.uint8]) -> Pose | None: ...


@dataclass(frozen=True)
class HelpParts:
    """What the help_call path needs; posture is only read when a call for help is heard."""

    intent: str
    pose: PoseReader
    rule: HelpRule
    detector_ref: str
    landmark_ref: str
    max_frames: int
    cooldown_s: float
    enabled: bool = True


DecisionHook = Callable[[SpeechSegment, Recognition, float | None, float | None], None]
"""``(segment, recognition, x_image, fused score)`` per decided speech segment; the scores are
None when the recognizer rejected the segment or it took the help_call path."""


class WakeDetector(Protocol):
    def process(self, chunk: npt.NDArray[np.int16]) -> list[WakeDetection]: ...


@dataclass(frozen=True)
class WakeParts:
    """Wake words: fed every audio chunk; vision answers only when one fires."""

    detector: WakeDetector
    refs: dict[str, str]  # model name -> name@version
    phrases: dict[str, str]  # model name -> spoken phrase
    require_person: bool
    window_s: float


class Presence:
    """``presence``: a person seen within ``hold_s``; ``talking``: presence while speech is on.

    Checked on the audio worker every ``interval_s`` of audio time on the newest frame only,
    so the idle cost is one detector run per interval.
    """

    def __init__(self, cfg: PresenceConfig) -> None:
        self.enabled = cfg.enabled
        self._interval_ns = int(cfg.interval_s * 1e9)
        self._hold_ns = int(cfg.hold_s * 1e9)
        self._next_ns = 0
        self._last_frame_ns = -1
        self._seen_ns: int | None = None
        self.present = False
        self.talking = False

    def due(self, now_ns: int) -> bool:
        return self.enabled and now_ns >= self._next_ns

    def update(
        self,
        now_ns: int,
        frame: Frame | None,
        score: float | None,
        min_score: float,
        speaking: bool,
    ) -> None:
        self._next_ns = now_ns + self._interval_ns
        if frame is not None and score is not None and score >= min_score:
            self._seen_ns = frame.t_ns
        self.present = self._seen_ns is not None and now_ns - self._seen_ns <= self._hold_ns
        self.talking = self.present and speaking

    def fresh(self, frame: Frame) -> bool:
        """Each frame is scored at most once."""
        if frame.t_ns == self._last_frame_ns:
            return False
        self._last_frame_ns = frame.t_ns
        return True


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
        help_parts: HelpParts | None = None,
        presence: Presence | None = None,
        wake_parts: WakeParts | None = None,
    ) -> None:
        self._device = device_id
        self.frames = frames
        self._segmenter = segmenter
        self.recognizer = recognizer  # public: ``evaluate`` swaps in a timed wrapper
        self.on_decision: DecisionHook | None = None
        self._scorer = scorer
        self._fuser = fuser
        self._vision = vision_cfg
        self._fusion = fusion_cfg
        self._rule = rule_cfg
        self._models = models
        self._sink = sink
        self._cooldown = Cooldown(rule_cfg.cooldown_s)
        self._help = help_parts
        self._wake = wake_parts
        self._wake_fed = 0  # samples fed to the wake-word detector
        self._help_cooldown = Cooldown(help_parts.cooldown_s if help_parts else 0.0)
        self.presence_state = presence
        self._pending: list[SpeechSegment] = []
        self._audio_ns = 0
        self._progress = on_progress or (lambda stage: None)
        self.times = StageTimes()
        self.decisions = Decisions()
        self.frames_seen = 0
        # Changed at run time by MQTT commands; read once per decision.
        self.settings = settings or RuntimeSettings(
            Settings(
                enabled=MappingProxyType(
                    {
                        VoiceCommand.TYPE: rule_cfg.enabled,
                        HelpCall.TYPE: bool(help_parts and help_parts.enabled),
                        WakeWord.TYPE: wake_parts is not None,
                    }
                ),
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
        self._progress("audio")  # audio arrived (again); processing follows
        started = time.perf_counter_ns()
        segments = list(self._segmenter.feed(chunk))
        self.times.add("vad_chunk", started)
        self._audio_ns = chunk.end_ns
        self._pending.extend(segments)
        self._resolve(final=False)
        if self._wake is not None:
            self._listen_for_wake_words(chunk)
        self._track_presence()
        self._progress("audio")

    def _listen_for_wake_words(self, chunk: AudioChunk) -> None:
        parts = self._wake
        assert parts is not None
        started = time.perf_counter_ns()
        found = parts.detector.process(chunk.samples)
        self._wake_fed += len(chunk.samples)
        self.times.add("wakeword_chunk", started)
        for det in found:
            if self.settings.current.is_enabled(WakeWord.TYPE):
                # Stamp from this chunk (not from the stream start): gaps after a microphone
                # reopen and clock drift must not shift the detection into the past.
                behind = self._wake_fed - round(det.t_offset * AUDIO_RATE)
                self._decide_wake(det, chunk.end_ns - behind * 1_000_000_000 // AUDIO_RATE)

    def _decide_wake(self, det: WakeDetection, t_ns: int) -> None:
        parts = self._wake
        assert parts is not None
        now = self.settings.current
        lo = max(0, t_ns - int(parts.window_s * 1e9))
        chosen = spread(self.frames.window(lo, t_ns), self._vision.max_frames_per_window)
        scores = [self._scorer.person_score(f.image) for f in chosen]
        in_view = [x for x in scores if x >= now.vision_min_score]
        x_image = sum(in_view) / len(scores) if scores else 0.0
        fused = self._fuser(x_image, det.probability)
        span = f"{lo / 1e9:.2f}-{t_ns / 1e9:.2f}s"
        if parts.require_person and not in_view:
            self.decisions.nobody_in_view += 1
            _LOGGER.info("wake word %s at %s but nobody was in view", det.name, span)
            return
        if fused.score < now.fusion_threshold:
            self.decisions.below_threshold += 1
            _LOGGER.info("wake word %s at %s: fused %.2f too low", det.name, span, fused.score)
            return
        phrase = parts.phrases.get(det.name, det.name)
        event = WakeWord(
            device=self._device,
            start=lo / 1e9,
            end=t_ns / 1e9,
            confidence=fused.score,
            intent=det.name,
            text=phrase,
            image=ImageEvidence(
                score=round(x_image, 4),
                frames_analysed=len(scores),
                frames_with_person=len(in_view),
                model=self._models.vision,
            ),
            audio=AudioEvidence(
                score=round(det.probability, 4),
                text=phrase,
                model=parts.refs.get(det.name, det.name),
                vad_model=self._models.vad,
                vad_peak=round(self._segmenter.last_probability, 4),
            ),
            fusion=FusionInfo(
                method=self._fuser.method,
                alpha=self._fuser.alpha,
                beta=self._fuser.beta,
                threshold=now.fusion_threshold,
                score=round(fused.score, 4),
            ),
            skew_ms=min((abs(f.t_ns - t_ns) / 1e6 for f in chosen), default=-1.0),
        )
        self._emit(event, span)

    def _track_presence(self) -> None:
        tracker = self.presence_state
        if tracker is None or not tracker.due(self._audio_ns):
            return
        frame = self.frames.latest()
        score = None
        if frame is not None and tracker.fresh(frame):
            started = time.perf_counter_ns()
            score = self._scorer.person_score(frame.image)
            self.times.add("presence_frame", started)
        tracker.update(
            self._audio_ns,
            frame,
            score,
            self.settings.current.vision_min_score,
            self._segmenter.in_speech,
        )

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
        rec = self.recognizer.recognize(seg.samples)
        self.times.add("speech_segment", started)
        span = f"{seg.start_ns / 1e9:.2f}-{seg.end_ns / 1e9:.2f}s"
        unfused = rec.intent is None or (self._help is not None and rec.intent == self._help.intent)
        if self.on_decision is not None and unfused:
            self.on_decision(seg, rec, None, None)
        if rec.intent is None:
            self.decisions.rejected_speech += 1
            _LOGGER.info("speech %s is not a command (%s)", span, rec.reason or "no intent")
            return
        if self._help is not None and rec.intent == self._help.intent:
            # A call for help is never a voice command, whether or not help_call is on.
            if now.is_enabled(HelpCall.TYPE):
                self._decide_help(seg, rec, span)
            return
        if not now.is_enabled(VoiceCommand.TYPE):
            return
        chosen = self._window(seg, self._vision.max_frames_per_window)
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
        if self.on_decision is not None:
            self.on_decision(seg, rec, x_image, fused.score)
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
            audio=self._audio_evidence(seg, rec),
            fusion=FusionInfo(
                method=self._fuser.method,
                alpha=self._fuser.alpha,
                beta=self._fuser.beta,
                threshold=now.fusion_threshold,
                score=round(fused.score, 4),
            ),
            skew_ms=_skew_ms(seg, chosen),
        )
        self._emit(event, span)

    def _emit(self, event: Event, span: str) -> None:
        self.decisions.emitted += 1
        _LOGGER.info(
            "%s %s (%r) at %s, confidence %.2f",
            event.type,
            event.intent,
            event.text,
            span,
            event.confidence,
        )
        self._sink.publish_event(event)

    def _window(self, seg: SpeechSegment, cap: int) -> list[Frame]:
        lo = seg.start_ns - int(self._fusion.window_before_s * 1e9)
        hi = seg.end_ns + int(self._fusion.window_after_s * 1e9)
        return spread(self.frames.window(lo, hi), cap)

    def _audio_evidence(self, seg: SpeechSegment, rec: Recognition) -> AudioEvidence:
        return AudioEvidence(
            score=round(rec.confidence, 4),
            text=rec.text,
            model=rec.model,
            vad_model=self._models.vad,
            vad_peak=round(seg.peak_probability, 4),
        )

    def _decide_help(self, seg: SpeechSegment, rec: Recognition, span: str) -> None:
        parts = self._help
        assert parts is not None
        chosen = self._window(seg, parts.max_frames)
        postures = []
        for frame in chosen:
            started = time.perf_counter_ns()
            pose = parts.pose.estimate(frame.image)
            self.times.add("pose_frame", started)
            postures.append(pose.posture if pose is not None else None)
        threshold = self.settings.current.fusion_threshold
        d = parts.rule(
            postures,
            intent=rec.intent,
            text=rec.text,
            speech_score=rec.confidence,
            threshold=threshold,
        )
        if not d.accepted:
            self.decisions.below_threshold += 1
            _LOGGER.info("heard %r at %s: no help_call (%s)", rec.text, span, d.reason)
            return
        if not self._help_cooldown.allow(HelpCall.TYPE, seg.start_ns):
            self.decisions.cooled_down += 1
            return
        event = HelpCall(
            device=self._device,
            start=seg.start_ns / 1e9,
            end=seg.end_ns / 1e9,
            confidence=d.confidence,
            intent=parts.intent,
            text=rec.text,
            image=PoseEvidence(
                score=round(d.x_image, 4),
                frames_analysed=d.frames,
                frames_with_person=d.frames_with_person,
                frames_lying=d.frames_lying,
                posture=d.posture or "none",
                model=parts.detector_ref,
                landmark_model=parts.landmark_ref,
            ),
            audio=self._audio_evidence(seg, rec),
            fusion=FusionInfo(
                method=parts.rule.method,
                alpha=parts.rule.alpha,
                beta=parts.rule.beta,
                threshold=threshold,
                score=round(d.confidence, 4),
            ),
            skew_ms=_skew_ms(seg, chosen),
        )
        self._emit(event, span)


def _skew_ms(seg: SpeechSegment, chosen: list[Frame]) -> float:
    """Distance from the utterance's midpoint to the nearest analysed frame; -1 if none."""
    mid = (seg.start_ns + seg.end_ns) // 2
    return min((abs(f.t_ns - mid) / 1e6 for f in chosen), default=-1.0)
