"""The project's int8 Silero VAD runs through SileroVad and tracks the float model on real audio."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.config.sections import VadConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.extractors.vad import WINDOW, Segmenter, SileroVad
from agent.models.store import ModelStore
from tests.conftest import SAMPLES, TESTDATA

INT8 = "silero_vad_int8"


def _read(path: Path) -> npt.NDArray[np.int16]:
    if path.suffix == ".raw":
        return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.int16)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def _recordings() -> list[Path]:
    # Scenes whose timeline has speech (a silent scene has nothing to compare).
    files = sorted(
        p.parent / "audio.wav"
        for p in SAMPLES.glob("*/scene.json")
        if json.loads(p.read_text())["timeline"].get("speech")
    )
    if TESTDATA.is_dir():
        files += sorted(TESTDATA.glob("**/*.wav")) + sorted(TESTDATA.glob("**/*.raw"))
    return files


def _probs(name: str, audio: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    session, _ = ModelStore().load(name)
    vad = SileroVad(session)
    n = len(audio) // WINDOW
    return np.array(
        [vad(audio[i * WINDOW : (i + 1) * WINDOW].astype(np.float32) / 32768.0) for i in range(n)]
    )


def _segments(name: str, audio: npt.NDArray[np.int16]) -> list[tuple[float, float]]:
    session, _ = ModelStore().load(name)
    seg = Segmenter(VadConfig(), SileroVad(session))
    out = []
    for i in range(0, len(audio), WINDOW):
        chunk = AudioChunk(i * 1_000_000_000 // AUDIO_RATE, i, audio[i : i + WINDOW])
        out += [(s.start_ns / 1e9, s.end_ns / 1e9) for s in seg.feed(chunk)]
    out += [(s.start_ns / 1e9, s.end_ns / 1e9) for s in seg.flush()]
    return out


def test_manifest_is_int8_mit_and_verified() -> None:
    store = ModelStore()
    manifest = store.manifest(INT8)
    store.verify(manifest)
    assert manifest.precision == "int8"
    assert manifest.licence == "MIT"
    assert manifest.runtime == "onnx"
    licence = (manifest.folder / "LICENSE").read_text(encoding="utf-8")
    assert "Silero Team" in licence
    assert "quantized" in licence
    session, _ = store.load(INT8)
    assert {i.name for i in session.inputs} >= {"input", "state", "sr"}
    assert {o.name for o in session.outputs} == {"output", "stateN"}


def test_accuracy_report_backs_the_shipped_variant() -> None:
    report = json.loads((ModelStore().manifest(INT8).folder / "accuracy.json").read_text("utf-8"))
    shipped = report["variants"][report["shipped"]]
    assert shipped["agreement"] >= 0.99
    assert shipped["segments_matched"] == shipped["segments_float"] == shipped["segments_int8"]
    assert report["windows"] > 2000


@pytest.mark.parametrize("path", _recordings(), ids=lambda p: p.parent.name + "/" + p.name)
def test_int8_tracks_float_on_real_recordings(path: Path) -> None:
    audio = _read(path)
    ref, got = _probs("silero_vad", audio), _probs(INT8, audio)
    agreement = float(np.mean((ref >= 0.5) == (got >= 0.5)))
    assert agreement >= 0.9, f"{path.name}: {agreement:.3f} of windows agree"
    assert float(np.mean(np.abs(ref - got))) < 0.05
    float_segs, int8_segs = _segments("silero_vad", audio), _segments(INT8, audio)
    assert len(int8_segs) == len(float_segs) >= 1
    for (f0, f1), (q0, q1) in zip(float_segs, int8_segs, strict=True):
        assert abs(f0 - q0) <= 0.15
        assert abs(f1 - q1) <= 0.15


def test_silence_and_noise_give_no_segment() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 30, AUDIO_RATE * 3).astype(np.int16)
    assert _segments(INT8, np.zeros(AUDIO_RATE * 2, np.int16)) == []
    assert _segments(INT8, noise) == []
