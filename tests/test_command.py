"""The trained command recognizer (speech embedding + int8 head), train and enroll."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.config.speech import SpeechConfig
from agent.errors import ConfigError, ModelError
from agent.extractors.command import CommandModelRecognizer, HeadSpec, fit_window
from agent.extractors.speech import build_recognizer
from agent.models.store import ModelStore, read_manifest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
INTENTS = {
    "light_on": ["turn on the light", "lights on"],
    "light_off": ["turn off the light", "lights off"],
    "fan_on": ["turn on the fan"],
    "fan_off": ["turn off the fan"],
    "help": ["help", "help me"],
}
CFG = SpeechConfig(engine="command_model")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def speak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    raw = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    out = subprocess.run(
        ["sox", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", "-t", "raw", "-"],
        input=raw,
        check=True,
        capture_output=True,
    ).stdout
    x = np.frombuffer(out, dtype=np.int16)
    pad = np.zeros(4000, dtype=np.int16)  # 0.25 s, as the VAD keeps
    return np.concatenate([pad, x, pad])


def test_fit_window_centres_and_refuses_long_segments() -> None:
    x = np.arange(1, 11, dtype=np.int16)
    out = fit_window(x, 20)
    assert out is not None and len(out) == 20
    assert out[5:15].tolist() == x.tolist() and not out[:5].any() and not out[15:].any()
    assert fit_window(np.ones(21, dtype=np.int16), 20) is None


def test_head_manifest_is_checked(tmp_path: Path) -> None:
    manifest = read_manifest(MODELS / "speech_command_int8")
    spec = HeadSpec.from_manifest(manifest)
    assert spec.labels[0] == "other" and 0 < spec.threshold < 1
    bad = json.loads((MODELS / "speech_command_int8" / "manifest.json").read_text("utf-8"))
    bad["postprocess"]["labels"] = ["turn on the light"]
    folder = tmp_path / "speech_command_int8"
    shutil.copytree(MODELS / "speech_command_int8", folder)
    (folder / "manifest.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ModelError, match="other"):
        HeadSpec.from_manifest(read_manifest(folder))


def test_unknown_phrase_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="edge-agent train"):
        build_recognizer(CFG, {"door": ["open the pod bay doors"]}, ModelStore(MODELS))


@pytest.fixture(scope="module")
def recognizer() -> CommandModelRecognizer:
    rec = build_recognizer(CFG, INTENTS, ModelStore(MODELS))
    assert isinstance(rec, CommandModelRecognizer)
    return rec


@needs_espeak
def test_shipped_model_hears_commands(recognizer: CommandModelRecognizer) -> None:
    # A voice of a family the model was trained on: a smoke test, not an accuracy figure
    # (those come from `edge-agent evaluate` on held-out voices).
    results = {
        (text, intent): recognizer.recognize(speak(text, speed=175))
        for intent, phrases in INTENTS.items()
        for text in phrases
    }
    right = [k for k, r in results.items() if r.intent == k[1]]
    wrong = [(k, r) for k, r in results.items() if r.intent not in (None, k[1])]
    assert not wrong
    assert len(right) >= len(results) - 1, results
    for (_, intent), r in results.items():
        if r.intent == intent:
            assert 0.5 <= r.confidence <= 1.0
            assert r.model.startswith("speech_command_int8@")


@needs_espeak
@pytest.mark.parametrize("text", ["open the front door", "what a lovely evening"])
def test_shipped_model_rejects_other_speech(recognizer: CommandModelRecognizer, text: str) -> None:
    rec = recognizer.recognize(speak(text))
    assert rec.intent is None, rec


def test_long_and_silent_segments_are_rejected(recognizer: CommandModelRecognizer) -> None:
    long = np.zeros(16000 * 5, dtype=np.int16)
    assert recognizer.recognize(long).intent is None
    assert recognizer.recognize(np.zeros(16000, dtype=np.int16)).intent is None


def test_real_recordings_are_not_commands(recognizer: CommandModelRecognizer) -> None:
    data = Path("/usr/share/pocketsphinx/test/data")
    raws = sorted(data.glob("*.raw"))
    if not raws:
        pytest.skip("pocketsphinx-testdata is not installed")
    for raw in raws:
        x = np.fromfile(raw, dtype="<i2")[: 16000 * 3]
        assert recognizer.recognize(x).intent is None, raw.name


def _write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.astype("<i2").tobytes())


@needs_espeak
def test_enroll_from_files_keeps_the_vad_cut(tmp_path: Path) -> None:
    from agent.config.schema import AgentConfig
    from agent.training.enroll import enroll_files, read_enrollment

    cfg = AgentConfig.model_validate({"intents": INTENTS})
    wav = tmp_path / "take.wav"
    x = np.concatenate([np.zeros(16000, np.int16), speak("lights on"), np.zeros(16000, np.int16)])
    _write_wav(wav, x)
    written = enroll_files(cfg, tmp_path / "enroll", "Lights on!", [wav, wav])
    assert [p.name for p in written] == ["take-001.wav", "take-002.wav"]
    takes = list(read_enrollment(tmp_path / "enroll"))
    assert [t[0] for t in takes] == ["lights on", "lights on"]
    assert 0.4 < len(takes[0][1]) / 16000 < len(x) / 16000  # cut, not the whole file
    with pytest.raises(ConfigError):
        enroll_files(cfg, tmp_path / "enroll", "open the door", [wav])


@pytest.mark.slow
@needs_espeak
def test_train_quick_writes_an_installable_bundle(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from agent.cli import main

    config = tmp_path / "agent.yaml"
    config.write_text('intents:\n  light_on: ["turn on the light"]\n  help: ["help me"]\n', "utf-8")
    out = tmp_path / "bundle" / "speech_command_int8"
    # Two seeds: two heads on the same features, averaged in the one model.
    args = ["train", "--config", str(config), "--out", str(out), "--quick", "--workers", "2"]
    rc = main([*args, "--seeds", "2"])
    assert rc == 0
    manifest = read_manifest(out)
    assert manifest.precision == "int8"
    assert manifest.postprocess["labels"] == ["other", "help me", "turn on the light"]
    accuracy = json.loads((out / "accuracy.json").read_text("utf-8"))
    assert accuracy["tuning_voices"] and 0 < accuracy["threshold"] < 1
    assert accuracy["heads"] == 2 and accuracy["options"]["seeds"] == 2
    store_root = tmp_path / "store"
    for name in ("speech_melspec", "speech_embedding_int8"):
        shutil.copytree(MODELS / name, store_root / name)
    store = ModelStore(store_root)
    store.install(out, force=True)
    rec = build_recognizer(CFG, {"light_on": ["turn on the light"], "help": ["help me"]}, store)
    assert rec.recognize(np.zeros(16000, np.int16)).intent is None


@needs_espeak
def test_enroll_from_the_microphone_through_portaudio(tmp_path: Path) -> None:
    # The real PortAudio path: an ALSA `file` device reads a FIFO fed at real time.
    pytest.importorskip("pyaudio")
    import os
    import sys

    from testbed import alsa_file_mic, make_fifo, start_feeder, stop

    gap = np.zeros(16000, dtype=np.int16)
    take = speak("turn off the fan")
    raw = tmp_path / "takes.raw"
    raw.write_bytes(np.concatenate([gap, take, gap, gap, take, gap]).astype("<i2").tobytes())
    fifo = make_fifo(tmp_path / "mic.fifo")
    alsa_file_mic(tmp_path, fifo)
    config = tmp_path / "agent.yaml"
    config.write_text(
        'microphone:\n  source: default\nintents:\n  fan_off: ["turn off the fan"]\n', "utf-8"
    )
    feeder = start_feeder(fifo, seconds=60, raw=raw)
    try:
        res = subprocess.run(
            [sys.executable, "-m", "agent", "enroll", "--config", str(config), "--phrase",
             "turn off the fan", "--takes", "2", "--dir", str(tmp_path / "enroll")],
            env={**os.environ, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
    finally:
        stop(feeder)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    takes = sorted((tmp_path / "enroll" / "turn_off_the_fan").glob("take-*.wav"))
    assert [t.name for t in takes] == ["take-001.wav", "take-002.wav"]
    for t in takes:
        with wave.open(str(t)) as w:
            seconds = w.getnframes() / w.getframerate()
        assert 0.5 * len(take) / 16000 < seconds < len(take) / 16000 + 1.0
