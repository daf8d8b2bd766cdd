"""Silero VAD on real recordings; the segmenter cuts utterances on the media clock."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config.sections import VadConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.extractors.vad import Segmenter, SileroVad
from agent.models.store import ModelStore
from tests.conftest import TESTDATA


def _segments(samples: np.ndarray, cfg: VadConfig | None = None) -> list[tuple[float, float]]:
    session, _ = ModelStore().load("silero_vad")
    seg = Segmenter(cfg or VadConfig(), SileroVad(session))
    out = []
    step = 512
    for i in range(0, len(samples), step):
        chunk = AudioChunk(i * 1_000_000_000 // AUDIO_RATE, i, samples[i : i + step])
        out += [(s.start_ns / 1e9, s.end_ns / 1e9) for s in seg.feed(chunk)]
    out += [(s.start_ns / 1e9, s.end_ns / 1e9) for s in seg.flush()]
    return out


def test_silence_and_noise_give_no_segment() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 30, AUDIO_RATE * 3)).astype(np.int16)
    assert _segments(np.zeros(AUDIO_RATE * 2, np.int16)) == []
    assert _segments(noise) == []


def test_real_recording_found_with_right_span() -> None:
    raw = TESTDATA / "goforward.raw"
    if not raw.exists():
        pytest.skip("pocketsphinx-testdata not installed")
    speech = np.frombuffer(raw.read_bytes(), dtype="<i2")
    pad = np.zeros(AUDIO_RATE, np.int16)
    audio = np.concatenate([pad, speech, pad, pad])
    segs = _segments(audio)
    assert segs, "no speech found in a real recording"
    start, end = segs[0][0], segs[-1][1]
    # The speech sits inside [1 s, 1 s + len]; allow the recording's own lead-in silence.
    total = len(speech) / AUDIO_RATE
    assert 1.0 <= start <= 1.0 + total / 2
    assert 1.0 + total / 2 <= end <= 1.0 + total + 0.1
