"""Scenes: corpus clips arranged on one media clock and run through the real ``Pipeline``.

A scene is continuous audio (clips with pauses over a low room-noise floor) plus camera frames
at ``FPS`` taken from a bundled sample video: a person in view (``person_command``) or an empty
room (``nobody_command``). Frames and audio chunks are fed in timestamp order exactly as
``replay`` does, so VAD, recognizer, face detector, fusion, cooldown and events are the
agent's own. Each speech segment the pipeline decides is also scored by two simpler policies:
audio-only (the recognizer accepted it) and image-only (a person in view during the segment).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.evaluation.corpus import PAD_S, Clip, Corpus
from agent.evaluation.metrics import ANY_INTENT, Firing, MatchResult, Truth, match
from agent.extractors.speech import IntentRecognizer, Recognition
from agent.extractors.vad import SpeechSegment
from agent.pipeline import Pipeline
from agent.publish.sink import MemorySink

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PERSON_VIDEO = SAMPLES / "person_command" / "video.avi"
EMPTY_VIDEO = SAMPLES / "nobody_command" / "video.avi"
FPS = 5.0
CHUNK = 512  # 32 ms, as replay feeds
ROOM_NOISE_DB = -58.0  # dBFS RMS floor between utterances (a quiet room, not digital zero)


@dataclass
class Scene:
    name: str
    audio: npt.NDArray[np.int16]
    truths: list[Truth]
    person: bool

    @property
    def duration_s(self) -> float:
        return len(self.audio) / AUDIO_RATE

    @property
    def speech_s(self) -> float:
        return sum(t.end_s - t.start_s for t in self.truths)


class _Track:
    """Appends clips with pauses; remembers where the speech of each one lies."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.parts: list[npt.NDArray[np.int16]] = []
        self.n = 0
        self.truths: list[Truth] = []
        self._rng = rng

    def pause(self, seconds: float) -> None:
        k = round(seconds * AUDIO_RATE)
        self.parts.append(np.zeros(k, dtype=np.int16))
        self.n += k

    def clip(self, clip: Clip, x: npt.NDArray[np.int16]) -> None:
        # Corpus clips carry PAD_S of near-silence either side; real recordings do not.
        pad = PAD_S if clip.kind != "real" else 0.0
        t0 = self.n / AUDIO_RATE
        dur = len(x) / AUDIO_RATE
        self.truths.append(
            Truth(
                start_s=t0 + min(pad, dur / 2),
                end_s=t0 + max(dur - pad, dur / 2),
                text=clip.text,
                intent=clip.intent,
                kind=clip.kind,
                family=clip.family,
                speaker=clip.speaker,
            )
        )
        self.parts.append(x)
        self.n += len(x)

    def audio(self) -> npt.NDArray[np.int16]:
        x = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int16)
        level = 32768.0 * 10.0 ** (ROOM_NOISE_DB / 20.0)
        noise = self._rng.standard_normal(len(x)) * level
        y: npt.NDArray[np.int16] = np.clip(x + noise, -32768, 32767).astype(np.int16)
        return y


def background_scene(
    corpus: Corpus,
    name: str,
    person: bool,
    *,
    near_per_text: int = 3,
    max_s: float | None = None,
    seed: int = 30,
) -> Scene:
    """All background lines of the corpus as continuous talk: narration blocks (one voice,
    several lines, short pauses) and dialogues (two voices alternating), with the near-miss
    sentences dropped in as standalone remarks. ``max_s`` cuts the arrangement short."""
    rng = np.random.default_rng(seed)
    lines: dict[str, list[Clip]] = {}
    for c in corpus.select(kind="background", split="test"):
        lines.setdefault(f"{c.family}/{c.voice}", []).append(c)
    for clips in lines.values():
        order = rng.permutation(len(clips))
        clips[:] = [clips[i] for i in order]
    by_text: dict[str, list[Clip]] = {}
    for c in corpus.select(kind="near_miss", split="test"):
        by_text.setdefault(c.text, []).append(c)
    near: list[Clip] = []
    for text in sorted(by_text):
        clips = by_text[text]
        picks = rng.choice(len(clips), size=min(near_per_text, len(clips)), replace=False)
        near.extend(clips[int(i)] for i in picks)
    near = [near[i] for i in rng.permutation(len(near))]
    track = _Track(rng)
    track.pause(1.0)
    voices = sorted(lines)
    while any(lines.values()) and (max_s is None or track.n / AUDIO_RATE < max_s):
        live = [v for v in voices if lines[v]]
        turns: list[Clip] = []
        if len(live) >= 2 and rng.random() < 0.5:
            a, b = (live[int(i)] for i in rng.choice(len(live), size=2, replace=False))
            for k in range(int(rng.integers(4, 9))):
                who = lines[a if k % 2 == 0 else b]
                if who:
                    turns.append(who.pop())
            gaps = (0.15, 0.8)
        else:
            v = live[int(rng.integers(len(live)))]
            for _ in range(int(rng.integers(3, 7))):
                if lines[v]:
                    turns.append(lines[v].pop())
            gaps = (0.3, 0.9)
        for _ in range(int(rng.integers(0, 3))):
            if near:
                turns.insert(int(rng.integers(len(turns) + 1)), near.pop())
        for clip in turns:
            track.clip(clip, corpus.audio(clip))
            track.pause(float(rng.uniform(*gaps)))
        track.pause(float(rng.uniform(1.0, 3.0)))
    while near and (max_s is None or track.n / AUDIO_RATE < max_s):
        clip = near.pop()
        track.clip(clip, corpus.audio(clip))
        track.pause(float(rng.uniform(0.5, 2.0)))
    return Scene(name, track.audio(), track.truths, person)


def clip_scene(
    corpus: Corpus, clips: Sequence[Clip], name: str, person: bool, *, seed: int = 31
) -> Scene:
    """Clips one after another with 2-3.5 s pauses (longer than any cooldown)."""
    rng = np.random.default_rng(seed)
    track = _Track(rng)
    track.pause(1.0)
    for clip in clips:
        track.clip(clip, corpus.audio(clip))
        track.pause(float(rng.uniform(2.0, 3.5)))
    return Scene(name, track.audio(), track.truths, person)


def sample_clips(clips: Sequence[Clip], n: int, seed: int) -> list[Clip]:
    """A seeded, order-shuffled sample of ``n`` clips (all when fewer)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(clips))[:n]
    return [clips[int(i)] for i in idx]


# --------------------------------------------------------------------------- running


def load_frames(video: Path, fps: float = FPS) -> list[npt.NDArray[np.uint8]]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 10.0)
        step = max(1, round(src_fps / fps))
        images: list[npt.NDArray[np.uint8]] = []
        k = 0
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                break
            if k % step == 0:
                images.append(np.ascontiguousarray(image))
            k += 1
    finally:
        cap.release()
    if not images:
        raise RuntimeError(f"no frames in {video}")
    return images


@dataclass
class Camera:
    """Frames that loop at ``FPS`` and the person score of each (for the image-only policy)."""

    images: list[npt.NDArray[np.uint8]]
    scores: list[float]

    def frame(self, k: int) -> Frame:
        return Frame(round(k * 1e9 / FPS), k, self.images[k % len(self.images)])

    def person_in(self, frames: Sequence[Frame], min_score: float) -> bool:
        return any(self.scores[f.index % len(self.scores)] >= min_score for f in frames)


@dataclass
class SceneRun:
    name: str
    person: bool
    duration_s: float
    speech_s: float
    segments: int
    wall_s: float
    policies: dict[str, MatchResult] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "person_in_view": self.person,
            "duration_s": round(self.duration_s, 1),
            "hours": round(self.duration_s / 3600.0, 4),
            "speech_s": round(self.speech_s, 1),
            "segments": self.segments,
            "wall_s": round(self.wall_s, 1),
            "policies": {k: v.as_dict() for k, v in self.policies.items()},
        }


def run_scene(
    scene: Scene,
    pipeline: Pipeline,
    sink: MemorySink,
    camera: Camera,
    cfg: AgentConfig,
    recognizer: IntentRecognizer | None = None,
) -> SceneRun:
    """Feed ``scene`` through a fresh ``pipeline`` (built with ``sink``) and score 3 policies."""
    if recognizer is not None:
        pipeline.recognizer = recognizer
    audio_fires: list[Firing] = []
    image_fires: list[Firing] = []
    before = int(cfg.fusion.window_before_s * 1e9)
    after = int(cfg.fusion.window_after_s * 1e9)
    segments = 0

    def on_decision(
        seg: SpeechSegment, rec: Recognition, x_image: float | None, fused: float | None
    ) -> None:
        nonlocal segments
        segments += 1
        start, end = seg.start_ns / 1e9, seg.end_ns / 1e9
        if rec.intent is not None:
            audio_fires.append(Firing(start, end, rec.intent, rec.text))
        window = pipeline.frames.window(seg.start_ns - before, seg.end_ns + after)
        if camera.person_in(window, cfg.vision.min_score):
            image_fires.append(Firing(start, end, ANY_INTENT, "(person in view)"))

    pipeline.on_decision = on_decision
    wall0 = time.perf_counter()
    x = scene.audio
    k = 0
    for i in range(0, len(x), CHUNK):
        chunk = AudioChunk(round(i * 1e9 / AUDIO_RATE), i, x[i : i + CHUNK])
        while (f := camera.frame(k)).t_ns <= chunk.end_ns:
            pipeline.on_frame(f)
            k += 1
        pipeline.on_audio(chunk)
    end_ns = round(len(x) * 1e9 / AUDIO_RATE) + after
    while (f := camera.frame(k)).t_ns <= end_ns:
        pipeline.on_frame(f)
        k += 1
    pipeline.finish()
    fused_fires = [Firing(e.start, e.end, e.intent, e.text) for e in sink.events]
    run = SceneRun(
        scene.name,
        scene.person,
        scene.duration_s,
        scene.speech_s,
        segments,
        time.perf_counter() - wall0,
    )
    for policy, fires in (
        ("fused", fused_fires),
        ("audio_only", audio_fires),
        ("image_only", image_fires),
    ):
        run.policies[policy] = match(scene.truths, fires)
    return run


__all__ = [
    "EMPTY_VIDEO",
    "FPS",
    "PERSON_VIDEO",
    "Camera",
    "Scene",
    "SceneRun",
    "background_scene",
    "clip_scene",
    "load_frames",
    "run_scene",
    "sample_clips",
]
