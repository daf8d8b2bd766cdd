"""wake_word end to end: a real microWakeWord model over espeak-ng audio, fused with the camera."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from agent.app import build_pipeline, replay
from agent.config.schema import AgentConfig
from agent.publish.sink import MemorySink
from tests.conftest import SAMPLES, espeak

pytest.importorskip("pymicro_features")


def _scene_audio(tmp_path: Path, seconds: float = 8.0, at: float = 2.5) -> Path:
    """'okay nabu' (a voice measured to trigger the model) at ``at`` s in faint seeded noise."""
    phrase = espeak("okay nabu", tmp_path / "okay.wav", voice="en-us")
    with wave.open(str(phrase)) as w:
        speech = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    rng = np.random.default_rng(7)
    audio = rng.normal(0, 30, int(seconds * 16000))
    start = int(at * 16000)
    audio[start : start + len(speech)] += speech
    out = tmp_path / "audio.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.clip(audio, -32768, 32767).astype("<i2").tobytes())
    return out


@pytest.mark.parametrize(("scene", "expect"), [("person_command", 1), ("nobody_command", 0)])
def test_wake_word_counts_only_with_a_person_in_view(
    tmp_path: Path, scene: str, expect: int
) -> None:
    cfg = AgentConfig.model_validate({"wakeword": {"enabled": True, "models": ["okay_nabu"]}})
    sink = MemorySink()
    pipeline = build_pipeline(cfg, sink)
    replay(pipeline, SAMPLES / scene / "video.avi", _scene_audio(tmp_path))
    wakes = [e for e in sink.events if e.type == "wake_word"]
    assert len(wakes) == expect, [e.to_payload() for e in sink.events]
    for ev in wakes:
        payload = ev.to_payload()
        assert payload["intent"] == "okay_nabu" and payload["text"]
        assert payload["evidence"]["audio"]["model"].startswith("wakeword_okay_nabu@")
        assert 2.5 <= payload["end"] <= 4.5  # fired at the end of the phrase, on the media clock
        assert payload["evidence"]["image"]["frames_with_person"] > 0


def test_wake_words_are_off_by_default() -> None:
    assert AgentConfig().wakeword.enabled is False


def test_early_wake_word_window_starts_at_zero(tmp_path: Path) -> None:
    """A wake word in the first second: the event's window is clipped to the stream start."""
    cfg = AgentConfig.model_validate({"wakeword": {"enabled": True, "window_s": 5.0}})
    sink = MemorySink()
    pipeline = build_pipeline(cfg, sink)
    replay(pipeline, SAMPLES / "person_command" / "video.avi", _scene_audio(tmp_path, at=0.3))
    wakes = [e.to_payload() for e in sink.events if e.type == "wake_word"]
    assert len(wakes) == 1 and wakes[0]["start"] == 0.0 < wakes[0]["end"]
