"""Speech embeddings (models/speech_melspec + speech_embedding_int8) on real and espeak speech."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.errors import ModelIntegrityError
from agent.extractors.embedding import MIN_SAMPLES, SpeechEmbedder
from agent.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
GOFORWARD = TESTDATA / "goforward.raw"  # held out: never in the int8 calibration set

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to synthesize speech (apt-get install espeak-ng sox)",
)


@pytest.fixture(scope="module")
def embedder() -> SpeechEmbedder:
    return SpeechEmbedder.from_store(ModelStore(MODELS), threads=1)


def float_reference() -> npt.NDArray[np.float32]:
    """The float pipeline's embeddings of goforward.raw, written by agent.training.frontend."""
    data = json.loads((MODELS / "speech_embedding_int8" / "accuracy.json").read_text())
    ref = data["float_reference_embeddings"]
    assert ref["audio"] == "pocketsphinx-testdata/goforward.raw"
    return np.asarray(ref["embeddings"], dtype=np.float32)


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    out: npt.NDArray[np.float64] = np.sum(a * b, axis=1) / (
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    )
    return out


def speak(
    tmp_path: Path, text: str, voice: str = "en-us", speed: int = 160
) -> npt.NDArray[np.int16]:
    src, dst = tmp_path / "espeak.wav", tmp_path / "16k.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(src), text], check=True, timeout=60
    )
    to_16k = ["sox", "-R", "-D", str(src), "-r", "16000", "-c", "1", "-b", "16", str(dst)]
    subprocess.run(
        [*to_16k, "pad", "0.3", "0.3"],
        check=True,
        timeout=60,
    )
    with wave.open(str(dst)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy()


def test_model_ref_and_shapes(embedder: SpeechEmbedder) -> None:
    assert embedder.model == "speech_melspec@0.3.0+speech_embedding_int8@0.3.0-int8.1"
    rng = np.random.default_rng(0)
    for n, steps in ((0, 1), (1600, 1), (MIN_SAMPLES, 1), (MIN_SAMPLES + 1279, 1), (32000, 16)):
        x = rng.integers(-3000, 3000, n).astype(np.int16)
        e = embedder.embed(x)
        assert e.shape == (steps, 96) and e.dtype == np.float32, n
        assert np.all(np.isfinite(e))
    # One more step per 8 mel frames (1280 samples = 80 ms).
    assert embedder.embed(np.zeros(MIN_SAMPLES + 1280, np.int16)).shape == (2, 96)
    assert embedder.embed(np.zeros(16000 * 5, np.int16)).shape == (53, 96)
    with pytest.raises(Exception, match="int16"):
        embedder.embed(np.zeros(16000, np.float32))


def test_int8_matches_float_on_a_real_recording(embedder: SpeechEmbedder) -> None:
    x = np.fromfile(GOFORWARD, dtype="<i2").astype(np.int16)
    q, f = embedder.embed(x), float_reference()
    assert q.shape == f.shape and len(q) > 20
    cos = cosine(q, f)
    assert float(np.mean(cos)) > 0.995, cos
    assert float(np.min(cos)) > 0.98, cos
    # The check can fail: another recording's embeddings are far from this reference.
    other = embedder.embed(np.fromfile(TESTDATA / "numbers.raw", "<i2").astype(np.int16))
    assert float(np.mean(cosine(other, f))) < 0.98


def test_store_refuses_a_tampered_model(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for name in ("speech_melspec", "speech_embedding_int8"):
        shutil.copytree(MODELS / name, root / name)
    model = root / "speech_embedding_int8" / "speech_embedding_int8.onnx"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        SpeechEmbedder.from_store(ModelStore(root))


def _distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Length-normalised DTW over per-step cosine distances."""
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    cost = 1.0 - an @ bn.T
    d = np.full((len(a) + 1, len(b) + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = cost[i - 1, j - 1] + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return float(d[-1, -1] / (len(a) + len(b)))


@needs_espeak
def test_same_phrase_at_two_speeds_is_closer_than_another_phrase(
    embedder: SpeechEmbedder, tmp_path: Path
) -> None:
    light = embedder.embed(speak(tmp_path, "turn on the light", speed=150))
    light_fast = embedder.embed(speak(tmp_path, "turn on the light", speed=200))
    door = embedder.embed(speak(tmp_path, "open the front door", speed=150))
    assert not np.allclose(light[: len(door)], door[: len(light)], atol=0.5)
    same, other = _distance(light, light_fast), _distance(light, door)
    assert same < 0.8 * other, (same, other)
