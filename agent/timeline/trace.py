"""A bounded recording of what the pipeline saw, heard and decided (the timeline report).

The recorder is an :class:`agent.rules.base.Observer` fed through the pipeline's hooks: every
audio chunk (waveform envelope, VAD probability), every frame the face detector looked at (a
small JPEG thumbnail with its best face), every decided utterance (``on_decision``: words,
intent, image / audio / fused scores and the thresholds of that moment), how each decision
ended (``RuleContext.note``) and every stage timing (``StageTimes.listener``).

The daemon runs for months, so everything is bounded twice: by time (only the last
``minutes`` are kept) and by count (fixed-size arrays and capped deques, whatever the rates),
so a burst of speech or a fast camera cannot grow it. At the defaults (5 minutes) it holds
at most 2.5 MB (measured with every cap full). Recording runs on the audio worker: ~40 µs per
32 ms chunk, and ~1 ms per analysed 640x480 frame for its thumbnail (INTER_AREA: the cheap
filters alias a 6x reduction badly), next to the face detector's ~10 ms on the same frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.core.media import AudioChunk, Frame
from agent.rules.base import Outcome

if TYPE_CHECKING:
    from agent.extractors.speech import Recognition
    from agent.extractors.vad import SpeechSegment
    from agent.extractors.vision import Detection
    from agent.pipeline import Pipeline

_LOGGER = logging.getLogger(__name__)

ENVELOPE_BIN = 320  # samples: the waveform is kept as one peak per 20 ms
ENVELOPE_PER_S = 16_000 / ENVELOPE_BIN
TIMINGS_PER_S = 100  # stage timings kept per second of the window (VAD alone takes ~31)
MAX_FRAMES = 600  # thumbnails (~3 KB each): a decision window or presence check at 1/s
MAX_DECISIONS = 1000
MAX_STAGES = 64
THUMB_WIDTH = 112  # px: readable face box, a few KB as JPEG
MATCH_NS = 2_000_000  # a decision's outcome and its scores name the same utterance


@dataclass(frozen=True, slots=True)
class FrameShot:
    """One analysed frame: a thumbnail with its best face drawn, and that face's score."""

    t_ns: int
    index: int
    score: float
    box: tuple[float, float, float, float] | None  # normalized (x0, y0, x1, y1), None: none
    jpeg: bytes


@dataclass(slots=True)
class Decision:
    """One decided utterance (or wake word): what was heard, the scores, how it ended."""

    kind: str  # the rule's event type, or "speech" when no rule took it
    start_ns: int
    end_ns: int
    decided_ns: int  # audio time when it was decided (its latency from end_ns)
    text: str = ""
    intent: str | None = None
    audio: float | None = None
    image: float | None = None
    fused: float | None = None
    fusion_threshold: float | None = None
    vision_min_score: float | None = None
    candidate: str | None = None  # the best phrase of a rejected utterance, with its p
    reason: str = ""  # the recognizer's own reason for a rejection
    outcome: Outcome | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the recording for the report page (the recorder keeps going)."""

    start_ns: int  # the window shown: [start_ns, end_ns] on the agent clock
    end_ns: int
    envelope: npt.NDArray[np.float64]  # rows: t_ns, peak (0..1), VAD probability, in speech
    timings: list[tuple[int, str, float]]  # (t_ns, stage, ms)
    frames: list[FrameShot]
    decisions: list[Decision]
    wall_offset_s: float | None  # wall time = agent time + this (live); None: media time
    settings: dict[str, float] = field(default_factory=dict)


class _Ring:
    """Fixed-capacity rows of float64; the oldest row is overwritten."""

    def __init__(self, capacity: int, columns: int) -> None:
        self._data = np.zeros((max(1, capacity), columns), dtype=np.float64)
        self._written = 0

    def append(self, rows: npt.NDArray[np.float64]) -> None:
        cap = len(self._data)
        rows = rows[-cap:]
        at = (self._written + np.arange(len(rows))) % cap
        self._data[at] = rows
        self._written += len(rows)

    def rows(self) -> npt.NDArray[np.float64]:
        cap = len(self._data)
        if self._written <= cap:
            return self._data[: self._written].copy()
        cut = self._written % cap
        return np.concatenate([self._data[cut:], self._data[:cut]])

    @property
    def capacity(self) -> int:
        return len(self._data)


def _thumbnail(frame: Frame, face: Detection | None, min_score: float) -> bytes:
    """A small JPEG of an analysed frame with its best face boxed (green: counts as a person)."""
    import cv2

    image = frame.image  # scored just now, so already decoded
    h, w = image.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / max(1, w)))
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
    if face is not None:
        x0, y0, x1, y1 = face.box
        color = (0, 200, 0) if face.score >= min_score else (0, 140, 255)
        cv2.rectangle(
            small,
            (round(x0 * tw), round(y0 * th)),
            (round(x1 * tw), round(y1 * th)),
            color,
            1,
        )
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return bytes(buf) if ok else b""


class Timeline:
    """Records the last ``minutes`` of one pipeline (see the module docstring).

    Thread-safe: the audio worker records, another thread may take a :meth:`snapshot`.
    """

    def __init__(self, minutes: float, *, wall_clock: bool = False) -> None:
        """``wall_clock``: agent times are ``time.monotonic_ns()`` (live) and the page shows
        local time; else they are media time (replay)."""
        if minutes <= 0:
            raise ValueError("a timeline needs a positive number of minutes")
        self.window_ns = int(minutes * 60e9)
        seconds = minutes * 60
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._envelope = _Ring(int(seconds * ENVELOPE_PER_S) + 64, 4)
        self._timings = _Ring(int(seconds * TIMINGS_PER_S) + 64, 3)  # t_ns, stage id, ms
        self._stage_ids: dict[str, int] = {}
        self._frames: OrderedDict[int, FrameShot] = OrderedDict()
        self._decisions: deque[Decision] = deque(maxlen=MAX_DECISIONS)
        self._now_ns = 0
        self._bin_t0 = 0.0  # the envelope bin in progress: its start, peak and samples
        self._bin_peak = 0
        self._bin_n = 0
        self._settings: Callable[[], dict[str, float]] = dict
        self._thumbnail_failed = False  # logged once, not per frame

    # -- wiring -------------------------------------------------------------------------

    def attach(self, pipeline: Pipeline) -> None:
        """Observe ``pipeline`` (its decisions, frames, chunks and stage timings)."""
        ctx = pipeline.ctx
        previous = ctx.on_decision

        def on_decision(
            seg: SpeechSegment, rec: Recognition, x_image: float | None, fused: float | None
        ) -> None:
            if previous is not None:  # keep whoever listened before (evaluate, tests)
                previous(seg, rec, x_image, fused)
            self.decided(seg, rec, x_image, fused)

        ctx.on_decision = on_decision
        ctx.observer = self
        ctx.times.listener = self.stage

        def settings() -> dict[str, float]:
            now = ctx.settings.current
            return {
                "fusion_threshold": now.fusion_threshold,
                "vision_min_score": now.vision_min_score,
            }

        self._settings = settings

    # -- Observer ---------------------------------------------------------------------

    def audio(self, chunk: AudioChunk, vad_probability: float, in_speech: bool) -> None:
        # One row per ENVELOPE_BIN samples whatever the chunk size (a bin may span two
        # chunks), so the array's capacity is a fixed span of audio time.
        s = np.abs(chunk.samples.astype(np.int32))
        n = len(s)
        ns_per_sample = 1e9 / 16_000
        starts: list[float] = []
        peaks: list[float] = []
        i = 0
        if self._bin_n and n:
            i = min(ENVELOPE_BIN - self._bin_n, n)
            self._bin_peak = max(self._bin_peak, int(s[:i].max()))
            self._bin_n += i
            if self._bin_n == ENVELOPE_BIN:
                starts.append(self._bin_t0)
                peaks.append(self._bin_peak)
                self._bin_n = 0
        full = (n - i) // ENVELOPE_BIN
        if full:
            block = s[i : i + full * ENVELOPE_BIN].reshape(full, ENVELOPE_BIN).max(axis=1)
            starts += (chunk.t_ns + (i + np.arange(full) * ENVELOPE_BIN) * ns_per_sample).tolist()
            peaks += block.tolist()
            i += full * ENVELOPE_BIN
        if i < n:
            self._bin_t0 = chunk.t_ns + i * ns_per_sample
            self._bin_peak = int(s[i:].max())
            self._bin_n = n - i
        rows = np.empty((len(starts), 4), dtype=np.float64)
        rows[:, 0] = starts
        rows[:, 1] = np.asarray(peaks, dtype=np.float64) / 32768.0
        rows[:, 2] = vad_probability
        rows[:, 3] = 1.0 if in_speech else 0.0
        with self._lock:
            self._envelope.append(rows)
            self._now_ns = max(self._now_ns, chunk.end_ns)
            self._prune()

    def frame_scored(self, frame: Frame, face: Detection | None, score: float) -> None:
        min_score = self._settings().get("vision_min_score", 0.5)
        try:
            jpeg = _thumbnail(frame, face, min_score)
        except Exception:  # an observer must not break the decision it watches
            if not self._thumbnail_failed:
                _LOGGER.exception("timeline: no thumbnail of frame %d", frame.index)
            self._thumbnail_failed = True
            jpeg = b""
        shot = FrameShot(
            t_ns=frame.t_ns,
            index=frame.index,
            score=score,
            box=face.box if face is not None else None,
            jpeg=jpeg,
        )
        with self._lock:
            old = self._frames.pop(frame.t_ns, None)
            if old is not None and shot.box is None and old.box is not None:
                shot = old  # presence gives a score only; keep the boxed one
            self._frames[frame.t_ns] = shot
            while len(self._frames) > MAX_FRAMES:
                self._frames.popitem(last=False)

    def outcome(
        self, event_type: str, start_ns: int, end_ns: int, outcome: Outcome, detail: str
    ) -> None:
        now = self._settings()
        with self._lock:
            for d in reversed(self._decisions):
                if abs(d.start_ns - start_ns) <= MATCH_NS and d.outcome is None:
                    d.kind = event_type
                    d.outcome = outcome
                    d.detail = detail
                    return
            # A decision without a heard utterance before it (a wake word).
            self._decisions.append(
                Decision(
                    kind=event_type,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    decided_ns=max(self._now_ns, end_ns),
                    outcome=outcome,
                    detail=detail,
                    fusion_threshold=now.get("fusion_threshold"),
                    vision_min_score=now.get("vision_min_score"),
                )
            )

    # -- other hooks --------------------------------------------------------------------

    def decided(
        self,
        seg: SpeechSegment,
        rec: Recognition,
        x_image: float | None,
        fused: float | None,
    ) -> None:
        """``on_decision``: an utterance with what the recognizer and the fusion made of it."""
        now = self._settings()
        post = rec.posterior
        candidate = None
        if rec.intent is None and post is not None:
            candidate = f"{post.phrase!r} ({post.intent}) p={post.p:.2f}"
        decision = Decision(
            kind="speech",
            start_ns=seg.start_ns,
            end_ns=seg.end_ns,
            decided_ns=max(self._now_ns, seg.end_ns),
            text=rec.text,
            intent=rec.intent,
            audio=rec.confidence,
            image=x_image,
            fused=fused,
            candidate=candidate,
            reason=rec.reason,
            fusion_threshold=now.get("fusion_threshold"),
            vision_min_score=now.get("vision_min_score"),
        )
        with self._lock:
            self._decisions.append(decision)

    def stage(self, name: str, ms: float) -> None:
        """``StageTimes.listener``: one stage's wall milliseconds, at the current audio time."""
        with self._lock:
            stage = self._stage_ids.get(name)
            if stage is None:
                if len(self._stage_ids) >= MAX_STAGES:
                    return  # stage names are a handful of constants; never grow without end
                stage = self._stage_ids[name] = len(self._stage_ids)
            self._timings.append(np.array([[self._now_ns, stage, ms]], dtype=np.float64))

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            end = self._now_ns
            start = max(0, end - self.window_ns)
            rows = self._envelope.rows()
            timings = self._timings.rows()
            names = {i: name for name, i in self._stage_ids.items()}
            return Snapshot(
                start_ns=start,
                end_ns=end,
                envelope=rows[rows[:, 0] >= start] if len(rows) else rows,
                timings=[(int(t), names[int(i)], float(ms)) for t, i, ms in timings if t >= start],
                frames=[f for f in self._frames.values() if f.t_ns >= start],
                decisions=[replace(d) for d in self._decisions if d.end_ns >= start],
                # Taken now, not at the start: a box without a real-time clock sets its wall
                # clock by NTP after it booted (and the agent started).
                wall_offset_s=time.time() - time.monotonic() if self._wall_clock else None,
                settings=self._settings(),
            )

    def _prune(self) -> None:
        """Drop what fell out of the window (the arrays are bounded by their size alone and
        filtered by time when read)."""
        oldest = self._now_ns - self.window_ns
        while self._frames:
            t_ns = next(iter(self._frames))
            if t_ns >= oldest:
                break
            del self._frames[t_ns]
        while self._decisions and self._decisions[0].end_ns < oldest:
            self._decisions.popleft()
