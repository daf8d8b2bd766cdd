"""What every decision rule shares: trigger → evidence window → fusion → event.

A rule owns one event type. The pipeline hands it a trigger (a recognized utterance, or an
audio chunk for wake words); the rule reads the evidence it needs from the shared
:class:`RuleContext` (frames on the agent clock, the person scorer, run-time settings), fuses,
and emits its event through the context. Rules never see the config beyond their own section
(given to their constructor) and never talk to MQTT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from agent.core.media import AudioChunk, Frame
from agent.core.settings import RuntimeSettings
from agent.events.registry import Event
from agent.events.types import AudioEvidence, FusionInfo, ImageEvidence
from agent.sync.ring import FrameRing, grid, spread

if TYPE_CHECKING:
    from agent.extractors.speech import Recognition
    from agent.extractors.vad import SpeechSegment
    from agent.extractors.vision import Detection
    from agent.fusion.learned import Fuser
    from agent.fusion.weighted import WeightedSum
    from agent.models.store import ModelStore
    from agent.pipeline import Decisions, StageTimes
    from agent.publish.sink import Sink

_LOGGER = logging.getLogger(__name__)

FACE_CACHE = 64  # frames' best faces kept (a few utterance windows at 10 fps)


class PersonScorer(Protocol):
    def person_score(self, image_bgr: npt.NDArray[np.uint8]) -> float: ...

    def best_face(self, image_bgr: npt.NDArray[np.uint8]) -> Detection | None: ...


@dataclass(frozen=True, slots=True)
class Models:
    """name@version of the shared models, quoted in event evidence."""

    vision: str
    vad: str


DecisionHook = Callable[["SpeechSegment", "Recognition", float | None, float | None], None]
"""``(segment, recognition, x_image, fused score)`` per decided speech segment; the scores are
None when the recognizer rejected the segment or no fused voice_command decision was made."""


Outcome = Literal[
    "accepted", "not_a_command", "disabled", "nobody_in_view", "below_threshold", "cooled_down"
]
"""How a decision ended, for :class:`Observer` (the counters in ``Decisions`` say how often)."""


class Observer(Protocol):
    """Watches the decisions without taking part (the timeline report, ``agent.timeline``).

    Called on the worker that decides, so an implementation must be quick and must not raise.
    """

    def audio(self, chunk: AudioChunk, vad_probability: float, in_speech: bool) -> None:
        """Every audio chunk, after the VAD and the decisions it led to."""

    def frame_scored(self, frame: Frame, face: Detection | None, score: float) -> None:
        """A frame the face detector looked at (presence or an utterance's window)."""

    def outcome(
        self, event_type: str, start_ns: int, end_ns: int, outcome: Outcome, detail: str
    ) -> None:
        """How one decision ended (speech from ``start_ns`` to ``end_ns`` or a wake word)."""


@dataclass(frozen=True, slots=True)
class Heard:
    """A speech segment and what the recognizer made of it."""

    segment: SpeechSegment
    recognition: Recognition

    @property
    def span(self) -> str:
        return f"{self.segment.start_ns / 1e9:.2f}-{self.segment.end_ns / 1e9:.2f}s"


@dataclass(frozen=True, slots=True)
class Window:
    """How far around an utterance frames count as its evidence."""

    before_s: float
    after_s: float


@dataclass(frozen=True, slots=True)
class PersonEvidence:
    x_image: float
    analysed: int
    with_person: int
    model: str
    face_height: float = 0.0  # fraction of the image height, mean over frames with a face
    facing: float = 0.0  # 1 = turned to the device, 0 = profile (``Detection.facing``)

    def evidence(self) -> ImageEvidence:
        return ImageEvidence(
            score=round(self.x_image, 4),
            frames_analysed=self.analysed,
            frames_with_person=self.with_person,
            model=self.model,
        )


class _Method(Protocol):
    method: str
    alpha: float
    beta: float


def fusion_info(fuser: _Method, threshold: float, score: float) -> FusionInfo:
    return FusionInfo(
        method=fuser.method,
        alpha=fuser.alpha,
        beta=fuser.beta,
        threshold=threshold,
        score=round(score, 4),
    )


@dataclass(frozen=True)
class Parts:
    """What rule builders may share: loaded once, handed to each rule that wants it."""

    store: ModelStore
    fuser: Fuser  # voice_command: hand-set or learned (fusion.method)
    weights: WeightedSum  # the hand-set weighted sum (wake words have no posterior)
    vad: VadState


class VadState(Protocol):
    @property
    def last_probability(self) -> float: ...


@dataclass
class RuleContext:
    """The shared, read-mostly state every rule decides with."""

    device: str
    frames: FrameRing
    scorer: PersonScorer
    window: Window
    models: Models
    settings: RuntimeSettings
    sink: Sink
    times: StageTimes
    decisions: Decisions
    on_decision: DecisionHook | None = None
    observer: Observer | None = None
    _faces: dict[int, Detection | None] = field(default_factory=dict, init=False, repr=False)

    def frames_around(self, seg: SpeechSegment, cap: int) -> list[Frame]:
        """At most ``cap`` frames, evenly spread, from the utterance's evidence window."""
        lo = seg.start_ns - int(self.window.before_s * 1e9)
        hi = seg.end_ns + int(self.window.after_s * 1e9)
        return spread(self.frames.window(lo, hi), cap)

    def frames_between(self, lo_ns: int, hi_ns: int, cap: int) -> list[Frame]:
        return spread(self.frames.window(lo_ns, hi_ns), cap)

    def speech_frames(self, start_ns: int, end_ns: int, cap: int) -> list[Frame]:
        """A command's face evidence: frames on a fixed grid from ``window.before_s`` before
        the utterance, at most ``cap`` of them evenly spread.

        The grid starts at a point known as soon as speech starts, so :meth:`prescore` can
        score these frames while the phrase is still being spoken and the decision at its end
        finds them done.
        """
        lo = start_ns - int(self.window.before_s * 1e9)
        hi = end_ns + int(self.window.after_s * 1e9)
        return spread(grid(self.frames.window(lo, hi), self._gap_ns(cap)), cap)

    def prescore(self, start_ns: int, cap: int) -> None:
        """Score the grid frames of the utterance under way that exist now.

        Up to twice ``cap`` of them: a phrase longer than ~1 s has more grid frames than
        ``cap``, and :meth:`speech_frames` then spreads its pick over all of them, so the
        first ``cap`` alone would leave frames for the detector at the decision (~10 ms each,
        on the way to the event).
        """
        lo = start_ns - int(self.window.before_s * 1e9)
        latest = self.frames.latest_ns()
        if latest is None or latest < lo:
            return
        for frame in grid(self.frames.window(lo, latest), self._gap_ns(cap))[: 2 * cap]:
            if frame.t_ns not in self._faces:
                self.faces([frame])

    def _gap_ns(self, cap: int) -> int:
        # The cap's frames cover the window around a 1 s phrase; longer ones are spread.
        span_s = self.window.before_s + self.window.after_s + 1.0
        return int(span_s / max(1, cap) * 1e9)

    def faces(self, frames: list[Frame]) -> list[Detection | None]:
        """The best face of each frame; each frame is looked at once (cached by its time)."""
        found = []
        for frame in frames:
            if frame.t_ns in self._faces:
                found.append(self._faces[frame.t_ns])
                continue
            started = time.perf_counter_ns()
            face = self.scorer.best_face(frame.image)
            self.times.add("vision_frame", started)
            if self.observer is not None:
                self.observer.frame_scored(frame, face, face.score if face is not None else 0.0)
            self._faces[frame.t_ns] = face
            while len(self._faces) > FACE_CACHE:  # oldest first (insertion order)
                del self._faces[next(iter(self._faces))]
            found.append(face)
        return found

    def person_in_view(self, frames: list[Frame]) -> PersonEvidence:
        """The best face of each frame against the run-time minimum score.

        x_image is the mean over the window with frames below the minimum counted as 0:
        someone present the whole utterance scores high, someone glimpsed once scores low.
        Face height and facing are means over the frames with a face in view.
        """
        minimum = self.settings.current.vision_min_score
        seen = [f for f in self.faces(frames) if f is not None and f.score >= minimum]
        n = len(frames)
        return PersonEvidence(
            x_image=sum(f.score for f in seen) / n if n else 0.0,
            analysed=n,
            with_person=len(seen),
            model=self.models.vision,
            face_height=sum(f.height for f in seen) / len(seen) if seen else 0.0,
            facing=sum(f.facing for f in seen) / len(seen) if seen else 0.0,
        )

    def note(
        self, event_type: str, start_ns: int, end_ns: int, outcome: Outcome, detail: str = ""
    ) -> None:
        """Tell the observer (if any) how a decision ended."""
        if self.observer is not None:
            self.observer.outcome(event_type, start_ns, end_ns, outcome, detail)

    def emit(self, event: Event, span: str) -> None:
        self.decisions.emitted += 1
        self.note(
            event.type,
            round(event.start * 1e9),
            round(event.end * 1e9),
            "accepted",
            f"{event.intent} ({event.confidence:.2f})",
        )
        _LOGGER.info(
            "%s %s (%r) at %s, confidence %.2f",
            event.type,
            event.intent,
            event.text,
            span,
            event.confidence,
        )
        self.sink.publish_event(event)


class Rule:
    """One event type's decision.

    Triggers (override those the rule uses):

    * :meth:`on_speech` gets each recognized utterance whose intent the rule owns
      (``intents``: those names; None: every intent no other rule owns).
    * :meth:`on_audio` gets every audio chunk (wake words).
    """

    TYPE: ClassVar[str]
    intents: frozenset[str] | None = frozenset()

    def __init__(self, ctx: RuleContext, enabled: bool) -> None:
        self.ctx = ctx
        self.enabled = enabled  # at start; MQTT and SIGHUP change ``ctx.settings``

    def on_speech(self, heard: Heard) -> None:
        """Decide on an utterance whose intent this rule owns."""

    def takes_candidate(self, rec: Recognition) -> bool:
        """Whether to decide an utterance the recognizer rejected whose best phrase (the
        ``posterior``) is one of this rule's intents."""
        return False

    def on_audio(self, chunk: AudioChunk) -> None:
        """See every audio chunk (after the VAD)."""

    def during_speech(self, start_ns: int) -> None:
        """Called per new frame while an utterance that began at ``start_ns`` goes on: gather
        evidence early so the decision at its end is quick."""

    @property
    def listens_to_audio(self) -> bool:
        return type(self).on_audio is not Rule.on_audio

    def entity_intents(self, unclaimed: tuple[str, ...]) -> tuple[str, ...]:
        """The ``intent`` values this rule's events can carry (Home Assistant event types);
        ``unclaimed``: the configured intents no rule names in ``intents``."""
        return unclaimed if self.intents is None else tuple(sorted(self.intents))


def skew_ms(seg: SpeechSegment, chosen: list[Frame]) -> float:
    """Distance from the utterance's midpoint to the nearest analysed frame; -1 if none."""
    mid = (seg.start_ns + seg.end_ns) // 2
    return min((abs(f.t_ns - mid) / 1e6 for f in chosen), default=-1.0)


def audio_evidence(heard: Heard, vad_model: str) -> AudioEvidence:
    rec = heard.recognition
    return AudioEvidence(
        score=round(rec.confidence, 4),
        text=rec.text,
        model=rec.model,
        vad_model=vad_model,
        vad_peak=round(heard.segment.peak_probability, 4),
    )
