"""Early end of utterance: a complete command is decided after ``endpoint_ms``, not the hangover.

Unit tests drive the segmenter with a scripted speech probability; the real-part test replays
a sample scene through the real pipeline (Silero, the command model, BlazeFace) and reads the
media time at which the command was decided.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from agent.app import build_pipeline, replay
from agent.cli import SAMPLES
from agent.config.schema import AgentConfig
from agent.config.sections import VadConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.extractors.vad import PREFETCH_LEAD_WINDOWS, WINDOW, Segmenter, SpeechSegment
from agent.publish.sink import MemorySink

WINDOW_MS = WINDOW * 1000 / AUDIO_RATE  # 32 ms


class Scripted:
    """Speech probability from a script: one value per 32 ms window."""

    def __init__(self, script: list[float]) -> None:
        self._it: Iterator[float] = iter(script)

    def __call__(self, window: np.ndarray) -> float:
        return next(self._it, 0.0)


def _run(script: list[float], cfg: VadConfig, answer: bool) -> tuple[list[SpeechSegment], int]:
    asked: list[SpeechSegment] = []

    def endpoint(seg: SpeechSegment) -> bool:
        asked.append(seg)
        return answer

    seg = Segmenter(cfg, Scripted(script), endpoint)
    out: list[SpeechSegment] = []
    samples = np.zeros(WINDOW, np.int16)
    for i in range(len(script) + 20):
        t = round(i * WINDOW * 1e9 / AUDIO_RATE)
        out += seg.feed(AudioChunk(t, i * WINDOW, samples))
    return out, len(asked)


def test_a_complete_command_ends_at_the_endpoint_not_the_hangover() -> None:
    cfg = VadConfig(min_silence_ms=400, endpoint_ms=150)
    script = [0.0] * 5 + [0.9] * 25 + [0.0] * 30  # 0.8 s of speech, then silence
    early, asked = _run(script, cfg, answer=True)
    late, _ = _run(script, cfg, answer=False)
    assert asked == 1 and len(early) == 1 and len(late) == 1
    # Same utterance either way; the early one just does not wait for min_silence_ms.
    assert early[0].start_ns == late[0].start_ns and early[0].end_ns == late[0].end_ns
    speech_end_ms = 30 * WINDOW_MS
    assert early[0].end_ns / 1e6 == speech_end_ms


def test_endpoint_asks_once_per_pause_and_a_pause_inside_a_phrase_does_not_cut_it() -> None:
    cfg = VadConfig(min_silence_ms=400, endpoint_ms=150)
    # speech, a 250 ms pause (asked once: "not yet"), speech again, then silence.
    script = [0.9] * 15 + [0.0] * 8 + [0.9] * 15 + [0.0] * 30
    segs, asked = _run(script, cfg, answer=False)
    assert asked == 2  # one per pause
    assert len(segs) == 1
    assert segs[0].start_ns == 0
    assert segs[0].end_ns / 1e6 == (15 + 8 + 15) * WINDOW_MS


def test_endpoint_off_or_not_shorter_than_the_hangover_never_asks() -> None:
    script = [0.9] * 15 + [0.0] * 30
    for ms in (0, 400, 600):
        segs, asked = _run(script, VadConfig(min_silence_ms=400, endpoint_ms=ms), answer=True)
        assert asked == 0 and len(segs) == 1


def test_real_pipeline_decides_a_command_soon_after_it_ends() -> None:
    """person_command with the shipped models: the event, decided within endpoint_ms + a
    window or two of the end of speech (media time), with the face evidence scored while the
    phrase was spoken; with the endpoint off it waits min_silence_ms as before."""
    scene = SAMPLES / "person_command"
    spoken = json.loads((scene / "scene.json").read_text())["timeline"]["speech"][0]
    spoken_start, spoken_end = spoken["start"], spoken["end"]

    def decided_at(endpoint_ms: int) -> tuple[float, list[str], int, int]:
        cfg = AgentConfig()
        cfg = cfg.model_copy(
            update={"vad": cfg.vad.model_copy(update={"endpoint_ms": endpoint_ms})}
        )
        sink = MemorySink()
        pipeline = build_pipeline(cfg, sink)
        when: list[float] = []
        late_frames: list[int] = []  # includes the presence checks (once per second)
        scorer = pipeline.ctx.scorer
        inner = scorer.best_face

        def best_face(image: np.ndarray) -> object:
            late_frames.append(pipeline._audio_ns)  # media time of each face-detector call
            return inner(image)

        scorer.best_face = best_face  # type: ignore[method-assign]
        pipeline.on_decision = lambda seg, rec, x, f: when.append(pipeline._audio_ns / 1e9)
        replay(pipeline, scene / "video.avi", scene / "audio.wav")
        at_decision = sum(1 for t in late_frames if abs(t / 1e9 - when[0]) < 1e-6)
        during = sum(1 for t in late_frames if spoken_start < t / 1e9 < when[0] - 1e-6)
        return when[0], [f"{e.type}:{e.intent}" for e in sink.events], at_decision, during

    t_early, events_early, calls_at_decision, calls_during = decided_at(150)
    t_late, events_late, _, _ = decided_at(0)
    assert events_early == events_late == ["voice_command:light_on"]
    assert t_early - spoken_end <= 0.15 + 0.1, (t_early, spoken_end)
    assert t_late - spoken_end >= 0.4
    # The window's frames were looked at while the phrase was spoken, not at the decision.
    assert calls_during >= 4 and calls_at_decision <= 1, (calls_during, calls_at_decision)


def test_prefetch_comes_before_the_endpoint_with_the_length_it_will_see() -> None:
    cfg = VadConfig(min_silence_ms=400, endpoint_ms=120, pad_ms=250)
    script = [0.0] * 12 + [0.9] * 25 + [0.0] * 30
    calls: list[tuple[int, int, int]] = []  # (window, samples now, samples at the check)
    asked: list[int] = []
    seg = Segmenter(cfg, Scripted(script), lambda s: asked.append(len(s.samples)) or True)
    seg.prefetch = lambda s, final: calls.append((seg.windows, len(s.samples), final))
    samples = np.zeros(WINDOW, np.int16)
    for i in range(len(script)):
        list(seg.feed(AudioChunk(round(i * WINDOW * 1e9 / AUDIO_RATE), i * WINDOW, samples)))
    # endpoint_ms 120 = 4 silent windows; the prefetch comes PREFETCH_LEAD_WINDOWS before.
    assert len(calls) == 1 and len(asked) == 1
    window, now, final = calls[0]
    assert window == 12 + 25 + 4 - PREFETCH_LEAD_WINDOWS
    assert final == now + PREFETCH_LEAD_WINDOWS * WINDOW == asked[0]


def test_prefetch_leaves_the_recognizer_s_answer_bit_for_bit_the_same() -> None:
    """The shipped command model: an utterance's probabilities with and without a prefetch of
    it less its last windows are identical, and most of the embedding windows are reused."""
    from agent.extractors.command import CommandModelRecognizer
    from agent.models.store import ModelStore
    from agent.sources.files import read_wav

    cfg = AgentConfig()
    store = ModelStore(cfg.models.dir)
    audio = read_wav(SAMPLES / "person_command" / "audio.wav")
    spoken = json.loads((SAMPLES / "person_command" / "scene.json").read_text())["timeline"][
        "speech"
    ][0]
    start = int((spoken["start"] - 0.25) * AUDIO_RATE)
    end = int((spoken["end"] + 0.13) * AUDIO_RATE)
    utterance = audio[start:end]
    plain = CommandModelRecognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    helped = CommandModelRecognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    lead = PREFETCH_LEAD_WINDOWS * WINDOW  # as much as the segmenter leaves unknown
    helped.prefetch(utterance[:-lead], len(utterance))
    p0 = plain.probabilities(utterance)
    p1 = helped.probabilities(utterance)
    assert p0 is not None and p1 is not None
    assert np.array_equal(p0, p1)
    assert helped._embedder.reused >= 14  # of 28 windows
    assert plain.recognize(utterance).intent == "light_on"
    # A prefetch of other audio is never mistaken for this one.
    other = CommandModelRecognizer(cfg.speech, cfg.intents, store, cfg.runtimes)
    other.prefetch(np.flip(utterance[:-WINDOW]).copy(), len(utterance))
    p2 = other.probabilities(utterance)
    assert p2 is not None and np.array_equal(p0, p2)
