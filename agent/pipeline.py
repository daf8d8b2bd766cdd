"""The processing core: audio drives, the rules decide, events go to a sink.

Drivers (live capture, replay) feed frames and audio chunks in; nothing here knows where
they come from or where events go. Each event type is a rule (``agent.rules``): the pipeline
cuts speech, recognizes each utterance once and hands it to the rule that owns its intent, and
hands every chunk to the rules that listen to raw audio.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from agent.config.sections import PresenceConfig
from agent.core import faults
from agent.core.media import AudioChunk, Frame
from agent.core.settings import RuntimeSettings
from agent.extractors.speech import IntentRecognizer, Recognition
from agent.extractors.vad import Segmenter, SpeechSegment
from agent.rules.base import DecisionHook, Heard, Rule, RuleContext
from agent.sync.ring import FrameRing

_LOGGER = logging.getLogger(__name__)

# A camera that delivers nothing this long after the window closes does not hold up a decision.
CAMERA_GRACE_NS = 1_000_000_000


class Presence:
    """``presence``: a person seen within ``hold_s``; ``talking``: presence while speech is on.

    Checked on the audio worker every ``interval_s`` of audio time on the newest frame only.
    The face detector runs only when that frame differs from the one it last looked at
    (mean absolute difference of tiny grey thumbnails ≥ ``motion_threshold``) or
    ``refresh_s`` has passed; an unchanged picture keeps the last answer. A still, empty
    room so costs a thumbnail a second instead of a detector run. While someone is present
    the detector only confirms it every ``hold_s / 2`` (arrivals are what needs the speed).
    """

    def __init__(self, cfg: PresenceConfig) -> None:
        self.enabled = cfg.enabled
        self._interval_ns = int(cfg.interval_s * 1e9)
        self._hold_ns = int(cfg.hold_s * 1e9)
        self._motion = cfg.motion_threshold
        self._refresh_ns = int(cfg.refresh_s * 1e9)
        self._next_ns = 0
        self._last_frame_ns = -1
        self._seen_ns: int | None = None
        self._ref: npt.NDArray[np.float32] | None = None
        self._ref_ns = 0
        self.last_score: float | None = None
        self.present = False
        self.talking = False
        self.still = 0  # checks answered from the last detector run (no motion)

    def due(self, now_ns: int) -> bool:
        return self.enabled and now_ns >= self._next_ns

    def confirmed(self, t_ns: int) -> bool:
        """A person was seen less than ``hold_s / 2`` before ``t_ns``: presence holds until
        ``hold_s`` after that anyway, so the detector need not look again yet (it looks again
        while there is still time to keep presence on)."""
        return (
            self.present
            and self._seen_ns is not None
            and 0 <= t_ns - self._seen_ns < self._hold_ns // 2
        )

    def changed(self, frame: Frame) -> bool:
        """Does ``frame`` need the detector (motion since its last run, or time to refresh)?
        When it does, ``frame`` becomes the picture later ones are compared with."""
        if self._motion <= 0:
            return True
        thumb = frame.thumbnail()
        if (
            self._ref is None
            or self.last_score is None
            or float(np.mean(np.abs(thumb - self._ref))) >= self._motion
            or frame.t_ns - self._ref_ns >= self._refresh_ns
        ):
            self._ref, self._ref_ns = thumb, frame.t_ns
            return True
        self.still += 1
        return False

    def scored(self, score: float) -> None:
        self.last_score = score

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
    total_ms: dict[str, float] = field(default_factory=dict)  # all time, for the overhead

    # Sees each timing as it is taken (the timeline report, ``agent.timeline``).
    listener: Callable[[str, float], None] | None = None

    def add(self, stage: str, started_ns: int) -> None:
        ms = (time.perf_counter_ns() - started_ns) / 1e6
        self.samples.setdefault(stage, deque(maxlen=self.KEEP)).append(ms)
        self.totals[stage] = self.totals.get(stage, 0) + 1
        self.total_ms[stage] = self.total_ms.get(stage, 0.0) + ms
        if self.listener is not None:
            self.listener(stage, ms)

    def median_ms(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.samples.items() if v}

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


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
        frames: FrameRing,
        segmenter: Segmenter,
        recognizer: IntentRecognizer,
        ctx: RuleContext,
        rules: list[Rule],
        window_after_s: float,
        presence: Presence | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.frames = frames
        self._segmenter = segmenter
        self.recognizer = recognizer  # public: ``evaluate`` swaps in a timed wrapper
        self.ctx = ctx
        self.rules = rules
        self._window_after_ns = int(window_after_s * 1e9)
        self._listeners = [r for r in rules if r.listens_to_audio]
        named = {i: r for r in rules if r.intents is not None for i in r.intents}
        catch_all = [r for r in rules if r.intents is None]
        self._owner: Callable[[str], Rule | None] = lambda intent: named.get(
            intent, catch_all[0] if catch_all else None
        )
        self.presence_state = presence
        self._speech_rules = [r for r in rules if type(r).during_speech is not Rule.during_speech]
        self._seen_frame_ns = -1
        # The recognizer's answer at the endpoint check, reused when that segment is decided.
        self._endpointed: tuple[SpeechSegment, Recognition] | None = None
        segmenter.endpoint = self._endpoint
        segmenter.prefetch = self._prefetch
        self._pending: list[SpeechSegment] = []
        self._endpoint_ns = 0
        self._audio_ns = 0
        self._progress = on_progress or (lambda stage: None)
        self.frames_seen = 0

    @property
    def times(self) -> StageTimes:
        return self.ctx.times

    @property
    def decisions(self) -> Decisions:
        return self.ctx.decisions

    @property
    def settings(self) -> RuntimeSettings:
        """Changed at run time by MQTT commands and SIGHUP; read once per decision."""
        return self.ctx.settings

    @property
    def on_decision(self) -> DecisionHook | None:
        return self.ctx.on_decision

    @on_decision.setter
    def on_decision(self, hook: DecisionHook | None) -> None:
        self.ctx.on_decision = hook

    @property
    def window_after_s(self) -> float:
        """How long after an utterance its frames are still wanted."""
        return self._window_after_ns / 1e9

    def on_frame(self, frame: Frame) -> None:
        self.frames.push(frame)
        self.frames_seen += 1
        self._progress("camera")

    def on_audio(self, chunk: AudioChunk) -> None:
        # The heartbeat comes only after the chunk is processed: a stage that keeps failing
        # must starve the watchdog (systemd then restarts the agent).
        faults.raise_if("audio_stage")
        started = time.perf_counter_ns()
        self._endpoint_ns = 0
        segments = list(self._segmenter.feed(chunk))
        # The endpoint check runs inside feed() and is timed on its own: not twice.
        self.times.add("vad_chunk", started + self._endpoint_ns)
        self._audio_ns = chunk.end_ns
        self._pending.extend(segments)
        self._resolve(final=False)
        self._during_speech()
        for rule in self._listeners:
            rule.on_audio(chunk)
        self._track_presence()
        if self.ctx.observer is not None:
            self.ctx.observer.audio(
                chunk, self._segmenter.last_probability, self._segmenter.in_speech
            )
        self._progress("audio")

    def idle(self) -> bool:
        """Nothing under way: no speech, no decision pending, the energy gate closed and no
        rule that listens to every chunk (the audio worker may then batch chunks)."""
        seg = self._segmenter
        return seg.quiet and not seg.in_speech and not self._pending and not self._listeners

    def _during_speech(self) -> None:
        """Let rules gather evidence while an utterance goes on (once per new frame)."""
        start = self._segmenter.speech_start_ns
        latest = self.frames.latest_ns()
        if start is None or latest is None or latest == self._seen_frame_ns:
            return
        self._seen_frame_ns = latest
        for rule in self._speech_rules:
            if self.settings.current.is_enabled(rule.TYPE):
                rule.during_speech(start)

    def _endpoint(self, seg: SpeechSegment) -> bool:
        """Segmenter's early end-of-utterance check: a configured phrase, recognized."""
        started = time.perf_counter_ns()
        rec = self.recognizer.recognize(seg.samples)
        self.times.add("speech_endpoint", started)
        self._endpoint_ns += time.perf_counter_ns() - started
        if rec.intent is None:
            return False
        self._endpointed = (seg, rec)
        return True

    def _prefetch(self, seg: SpeechSegment, final: int) -> None:
        """A window before the endpoint check: let the recognizer start on the segment."""
        prefetch = getattr(self.recognizer, "prefetch", None)
        if prefetch is None:  # only the command model can use a head start
            return
        started = time.perf_counter_ns()
        prefetch(seg.samples, final)
        self.times.add("speech_prefetch", started)
        self._endpoint_ns += time.perf_counter_ns() - started

    def _track_presence(self) -> None:
        tracker = self.presence_state
        if tracker is None or not tracker.due(self._audio_ns):
            return
        frame = self.frames.latest()
        score = None
        if frame is not None and tracker.fresh(frame):
            started = time.perf_counter_ns()
            if tracker.confirmed(frame.t_ns):
                pass  # seen lately: presence holds without the detector for now
            elif tracker.changed(frame):
                score = self.ctx.scorer.person_score(frame.image)
                tracker.scored(score)
                self.times.add("presence_frame", started)
                if self.ctx.observer is not None:
                    self.ctx.observer.frame_scored(frame, None, score)
            else:
                score = tracker.last_score
                self.times.add("presence_still", started)
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
        due: list[SpeechSegment] = []
        for seg in self._pending:
            need = seg.end_ns + self._window_after_ns
            ready = latest is not None and latest >= need
            if final or ready or self._audio_ns - need > CAMERA_GRACE_NS:
                due.append(seg)
            else:
                keep.append(seg)
        # Out of the queue before deciding: a segment whose decision raises is dropped, not
        # decided again (and again) on every chunk.
        self._pending = keep
        for seg in due:
            self._decide(seg)

    def _decide(self, seg: SpeechSegment) -> None:
        self.decisions.segments += 1
        early, self._endpointed = self._endpointed, None
        if early is not None and early[0] is seg:
            rec = early[1]
        else:
            started = time.perf_counter_ns()
            rec = self.recognizer.recognize(seg.samples)
            self.times.add("speech_segment", started)
        heard = Heard(seg, rec)
        rule = self._owner(rec.intent) if rec.intent is not None else None
        if rule is None and rec.posterior is not None:
            maybe = self._owner(rec.posterior.intent)
            if maybe is not None and maybe.takes_candidate(rec):
                rule = maybe
        if rule is None:
            if self.on_decision is not None:
                self.on_decision(seg, rec, None, None)
            self.decisions.rejected_speech += 1
            self.ctx.note("speech", seg.start_ns, seg.end_ns, "not_a_command", rec.reason)
            _LOGGER.info("speech %s is not a command (%s)", heard.span, rec.reason or "no intent")
            return
        if not self.settings.current.is_enabled(rule.TYPE):
            if self.on_decision is not None:
                self.on_decision(seg, rec, None, None)
            self.ctx.note(rule.TYPE, seg.start_ns, seg.end_ns, "disabled", rule.TYPE)
            return
        rule.on_speech(heard)
