"""The evaluation corpus: WAV clips + ``manifest.jsonl``, rebuilt bit for bit from fixed seeds.

Splits are by voice family and speaker, never by clip:

* ``test``: every voice of the evaluation-only families (Debian's flite voices, the Piper
  voice ``joe`` with its variants) and the espeak-ng base voices in ``HELD_OUT_ESPEAK`` with
  their variants;
* ``tune``: the espeak-ng base voices in ``TUNE_ESPEAK`` (for choosing thresholds);
* everything else (other espeak-ng voices, Festival, Kokoro) is training-side and never here.
  The training side excludes ``EXCLUDED_FROM_TRAINING`` (both lists, every variant of them;
  compare ``espeak_base(voice)``), and never trains on ``EVAL_ONLY_FAMILIES``.

Contents: every configured phrase x voice x speed x condition (clean; noise at 10-20 dB SNR;
reverb with RT60 0.3-0.6 s), the evaluation-only near-miss sentences, the real recordings of
Debian's ``pocketsphinx-testdata``, and background talk lines that ``scenes.py`` arranges into
a continuous stream. Clips are stored as the VAD would cut them (speech + 0.25 s either side).
"""

from __future__ import annotations

import json
import logging
import re
import time
import wave
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from agent.extractors.speech import SAMPLE_RATE, normalize_phrase
from agent.training import augment
from agent.training.texts import BACKGROUND, EVAL_NEAR_MISSES
from agent.training.voices import (
    EVAL_ONLY_FAMILIES,
    Voice,
    VoiceUnavailable,
    family_voices,
    synthesize,
)

_LOGGER = logging.getLogger(__name__)

CORPUS_VERSION = 1
SEED = 8

# espeak-ng base voices (``-v`` names before ``+variant``) reserved for evaluation.
HELD_OUT_ESPEAK: tuple[str, ...] = ("en-gb-scotland", "en-029", "en-us-nyc")
TUNE_ESPEAK: tuple[str, ...] = ("en-gb-x-rp", "en-gb-x-gbcwmd")
EXCLUDED_FROM_TRAINING: frozenset[str] = frozenset(HELD_OUT_ESPEAK + TUNE_ESPEAK)
"""espeak-ng bases the training side must skip (``espeak_base(v) in EXCLUDED_FROM_TRAINING``)."""

TEST_FAMILIES: tuple[str, ...] = ("espeak", "flite", "piper")
SPEEDS: tuple[float, ...] = (0.8, 1.0, 1.25)
CONDITIONS: tuple[str, ...] = ("clean", "noise", "reverb")
PAD_S = 0.25  # what the VAD keeps either side of speech (vad.pad_ms)
REAL_DIR = Path("/usr/share/pocketsphinx/test/data")

Kind = Literal["command", "near_miss", "real", "background"]
Split = Literal["test", "tune"]


def espeak_base(voice: Voice) -> str:
    """``en-gb-scotland+f3`` -> ``en-gb-scotland``."""
    return voice.name.split("+", 1)[0]


def split_of(voice: Voice) -> Split | None:
    """The evaluation split a voice belongs to; None: training-side (never in the corpus)."""
    if voice.family in EVAL_ONLY_FAMILIES:
        return "test"
    if voice.family == "espeak":
        base = espeak_base(voice)
        if base in HELD_OUT_ESPEAK:
            return "test"
        if base in TUNE_ESPEAK:
            return "tune"
    return None


def is_training_voice(voice: Voice) -> bool:
    return split_of(voice) is None


@dataclass(frozen=True, slots=True)
class Clip:
    """One manifest row."""

    path: str  # relative to the corpus directory
    text: str
    intent: str | None
    kind: str  # Kind
    family: str
    speaker: str
    voice: str
    speed: float
    condition: str
    split: str  # Split
    duration_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class Corpus:
    root: Path
    clips: list[Clip]
    meta: dict[str, Any]

    def audio(self, clip: Clip) -> npt.NDArray[np.int16]:
        return read_wav(self.root / clip.path)

    def select(self, **eq: object) -> list[Clip]:
        return [c for c in self.clips if all(getattr(c, k) == v for k, v in eq.items())]


@dataclass(frozen=True)
class Plan:
    """How big; ``quick`` is for tests (seconds to build)."""

    speeds: tuple[float, ...]
    conditions: tuple[str, ...]
    espeak_variants: int  # per held-out/tune base voice (a fixed, seeded choice)
    voices_per_family: int | None  # cap per non-espeak family (None: all)
    phrases_per_intent: int | None
    near_misses: int | None
    tune: bool
    background_voices_per_line: int
    background_lines: int | None
    real: int | None

    @staticmethod
    def of(quick: bool) -> Plan:
        if quick:
            return Plan((1.0,), ("clean", "noise"), 1, 1, 1, 4, True, 1, 16, 2)
        return Plan(SPEEDS, CONDITIONS, 6, None, None, None, True, 7, None, None)


# --------------------------------------------------------------------------- audio I/O


def write_wav(path: Path, x: npt.NDArray[np.int16]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.ascontiguousarray(x, dtype="<i2").tobytes())


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM")
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return x if rate == SAMPLE_RATE else _resample(x, rate)


def _resample(x: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    return augment.to_int16(augment.resample(x, rate, SAMPLE_RATE))


def _rng(*key: object) -> np.random.Generator:
    """A generator per clip, from its identity only: rebuilding any subset gives the same bytes."""
    return np.random.default_rng([SEED, zlib.crc32("|".join(map(str, key)).encode())])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


# --------------------------------------------------------------------------- voices


def evaluation_voices(
    plan: Plan, families: Sequence[str], warn: Callable[[str], None]
) -> tuple[dict[Split, list[Voice]], list[str]]:
    """Test and tune voices per the split rules; the families that are missing."""
    out: dict[Split, list[Voice]] = {"test": [], "tune": []}
    missing: list[str] = []
    for family in families:
        try:
            voices = family_voices(family)
        except (VoiceUnavailable, ValueError) as err:  # ValueError: an unknown family
            warn(f"voice family {family!r} is not available, skipped: {err}")
            missing.append(family)
            continue
        by_split: dict[Split, list[Voice]] = {"test": [], "tune": []}
        for v in voices:
            split = split_of(v)
            if split is not None:
                by_split[split].append(v)
        for split, vs in by_split.items():
            if family == "espeak":
                vs = _espeak_choice(vs, plan.espeak_variants)
            elif plan.voices_per_family is not None:
                vs = sorted(vs, key=lambda v: v.name)[: plan.voices_per_family]
            if split == "tune" and not plan.tune:
                vs = []
            out[split].extend(vs)
        if not by_split["test"] and not by_split["tune"]:
            warn(f"voice family {family!r} has no evaluation voices")
            missing.append(family)
    return out, missing


def _espeak_choice(voices: list[Voice], per_base: int) -> list[Voice]:
    """The plain base voice plus a seeded choice of its variants, per base."""
    chosen: list[Voice] = []
    bases = sorted({espeak_base(v) for v in voices})
    for base in bases:
        mine = sorted((v for v in voices if espeak_base(v) == base), key=lambda v: v.name)
        plain = [v for v in mine if v.name == base]
        rest = [v for v in mine if v.name != base]
        rng = _rng("variants", base)
        order = [rest[i] for i in rng.permutation(len(rest))]
        chosen.extend((plain + order)[:per_base])
    return chosen


# --------------------------------------------------------------------------- building


class _Builder:
    def __init__(self, root: Path, warn: Callable[[str], None]) -> None:
        self.root = root
        self.rows: list[Clip] = []
        self._warn = warn
        self._cache: dict[tuple[str, str, str, float], npt.NDArray[np.int16] | None] = {}
        self.failed = 0

    def speech(self, voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16] | None:
        key = (voice.family, voice.name, text, speed)
        if key not in self._cache:
            try:
                x = synthesize(voice, text, speed=speed)
                self._cache[key] = x if len(x) > 0 else None
            except VoiceUnavailable as err:
                self.failed += 1
                self._warn(f"{voice.family}/{voice.name}: {text!r}: {err}")
                self._cache[key] = None
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()

    def add(
        self,
        kind: Kind,
        voice: Voice,
        split: Split,
        text: str,
        intent: str | None,
        speed: float,
        condition: str,
        babble: npt.NDArray[np.int16] | None,
    ) -> None:
        x = self.speech(voice, text, speed)
        if x is None:
            return
        rng = _rng(kind, voice.family, voice.name, text, speed, condition)
        y = augment.pad(x, rng, pre_s=PAD_S, post_s=PAD_S)
        if condition == "noise":
            kinds = ["white", "pink", "babble"] if babble is not None else ["white", "pink"]
            y = augment.add_noise(
                y, float(rng.uniform(10.0, 20.0)), rng, kind=str(rng.choice(kinds)),
                babble_source=babble,
            )  # fmt: skip
        elif condition == "reverb":
            y = augment.reverb(y, float(rng.uniform(0.3, 0.6)), rng)
        name = f"{_slug(text)}_{speed:g}_{condition}.wav"
        rel = Path("clips", kind, voice.family, _slug(voice.name), name)
        write_wav(self.root / rel, y)
        self.rows.append(
            Clip(
                path=str(rel),
                text=text,
                intent=intent,
                kind=kind,
                family=voice.family,
                speaker=voice.speaker,
                voice=voice.name,
                speed=speed,
                condition=condition,
                split=split,
                duration_s=round(len(y) / SAMPLE_RATE, 3),
            )
        )


def real_recordings(limit: int | None = None) -> list[tuple[Path, str, int]]:
    """(file, transcript, sample rate) of Debian's pocketsphinx-testdata, if installed."""
    found: list[tuple[Path, str, int]] = []
    for folder in ("cards", "librivox"):
        trans = (
            REAL_DIR / folder / ("cards.transcription" if folder == "cards" else "transcription")
        )
        if not trans.is_file():
            continue
        for line in trans.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*<s>(.*)</s>\s*\((.+)\)\s*$", line)
            if m and (REAL_DIR / folder / f"{m.group(2)}.wav").is_file():
                found.append((REAL_DIR / folder / f"{m.group(2)}.wav", m.group(1).strip(), 16000))
    raws = (
        ("goforward.raw", "go forward ten meters", 16000),
        ("numbers.raw", "", 16000),
        ("something.raw", "", 16000),
        ("tidigits/dhd.2934z.raw", "two nine three four zero", 8000),
    )
    for rel, text, rate in raws:
        if (REAL_DIR / rel).is_file():
            found.append((REAL_DIR / rel, text, rate))
    return found[:limit] if limit is not None else found


def _load_real(path: Path, rate: int) -> npt.NDArray[np.int16]:
    if path.suffix == ".wav":
        return read_wav(path)
    x = np.fromfile(path, dtype="<i2").astype(np.int16)
    return x if rate == SAMPLE_RATE else _resample(x, rate)


def _babble(builder: _Builder, voices: Sequence[Voice]) -> npt.NDArray[np.int16] | None:
    """Several test voices reading background lines at once: the babble noise source."""
    tracks = []
    for i, v in enumerate(voices[:4]):
        x = builder.speech(v, " ".join(BACKGROUND[i * 3 : i * 3 + 3]), 1.0)
        if x is not None:
            tracks.append(x.astype(np.float64))
    if not tracks:
        return None
    n = max(len(t) for t in tracks)
    mix = sum(np.pad(t, (0, n - len(t))) for t in tracks)
    mix = np.asarray(mix, dtype=np.float64)
    peak = float(np.max(np.abs(mix))) or 1.0
    return (mix / peak * 16000).astype(np.int16)


def build_corpus(
    out_dir: Path,
    intents: Mapping[str, Sequence[str]],
    *,
    quick: bool = False,
    families: Sequence[str] = TEST_FAMILIES,
    warn: Callable[[str], None] | None = None,
) -> Corpus:
    """Synthesize everything into ``out_dir`` (replacing what was there) and write the manifest."""
    say = warn or (lambda msg: print(f"warning: {msg}"))
    t0 = time.perf_counter()
    plan = Plan.of(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "manifest.jsonl", out_dir / "corpus.json"):
        stale.unlink(missing_ok=True)
    voices, missing = evaluation_voices(plan, families, say)
    b = _Builder(out_dir, say)
    # From the held-out espeak voices when present: the same babble whatever else is installed.
    espeak = [v for v in voices["test"] if v.family == "espeak"]
    babble = _babble(b, espeak or voices["test"])
    b.clear()
    phrases = [
        (intent, normalize_phrase(p))
        for intent, ps in sorted(intents.items())
        for p in list(ps)[: plan.phrases_per_intent]
    ]
    near = list(EVAL_NEAR_MISSES[: plan.near_misses])
    splits: tuple[Split, ...] = ("test", "tune")
    for split in splits:
        for v in voices[split]:
            for intent, phrase in phrases:
                for speed in plan.speeds:
                    for cond in plan.conditions:
                        b.add("command", v, split, phrase, intent, speed, cond, babble)
            for k, text in enumerate(near):
                # Every near miss in every voice at normal speed; the condition rotates.
                cond = plan.conditions[k % len(plan.conditions)]
                b.add("near_miss", v, split, text, None, 1.0, cond, babble)
            b.clear()
    # Background lines: each in several test voices (rotating), at normal speed, clean; the
    # scene builder adds the room.
    test_voices = voices["test"]
    lines = list(BACKGROUND[: plan.background_lines])
    if test_voices:
        for i, text in enumerate(lines):
            for j in range(plan.background_voices_per_line):
                v = test_voices[(i * plan.background_voices_per_line + j) % len(test_voices)]
                b.add("background", v, "test", text, None, 1.0, "clean", None)
        b.clear()
    reals = real_recordings(plan.real)
    if not reals:
        say(f"no real recordings in {REAL_DIR} (apt-get install pocketsphinx-testdata)")
        missing.append("real")
    for path, text, rate in reals:
        x = _load_real(path, rate)
        rel = Path("clips", "real", f"{_slug(path.stem)}.wav")
        write_wav(out_dir / rel, x)
        b.rows.append(
            Clip(str(rel), text, None, "real", "real", path.stem, path.name, 1.0, "clean", "test",
                 round(len(x) / SAMPLE_RATE, 3))
        )  # fmt: skip
    with (out_dir / "manifest.jsonl").open("w", encoding="utf-8") as f:
        for row in b.rows:
            f.write(row.to_json() + "\n")
    meta: dict[str, Any] = {
        "version": CORPUS_VERSION,
        "seed": SEED,
        "quick": quick,
        "intents": {k: list(v) for k, v in sorted(intents.items())},
        "families": list(families),
        "families_missing": missing,
        "held_out_espeak": list(HELD_OUT_ESPEAK),
        "tune_espeak": list(TUNE_ESPEAK),
        "voices": {s: [f"{v.family}/{v.name}" for v in vs] for s, vs in voices.items()},
        "clips": len(b.rows),
        "synthesis_failures": b.failed,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Corpus(out_dir, b.rows, meta)


def load_corpus(root: Path) -> Corpus:
    meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
    clips = [
        Clip(**json.loads(line))
        for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return Corpus(root, clips, meta)


def corpus_matches(
    root: Path, intents: Mapping[str, Sequence[str]], quick: bool, families: Sequence[str]
) -> bool:
    """Whether ``root`` holds a complete corpus built for these intents, size and families."""
    try:
        meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        (root / "manifest.jsonl").is_file()
        and meta.get("version") == CORPUS_VERSION
        and meta.get("quick") == quick
        and meta.get("intents") == {k: list(v) for k, v in sorted(intents.items())}
        and sorted(meta.get("families", [])) == sorted(families)
    )


def ensure_corpus(
    root: Path,
    intents: Mapping[str, Sequence[str]],
    *,
    quick: bool = False,
    rebuild: bool = False,
    families: Iterable[str] = TEST_FAMILIES,
    warn: Callable[[str], None] | None = None,
) -> tuple[Corpus, bool]:
    """Load the corpus at ``root``, building it first when missing, stale or ``rebuild``."""
    fams = list(families)
    if not rebuild and corpus_matches(root, intents, quick, fams):
        return load_corpus(root), False
    return build_corpus(root, intents, quick=quick, families=fams, warn=warn), True


__all__ = [
    "CONDITIONS",
    "EXCLUDED_FROM_TRAINING",
    "HELD_OUT_ESPEAK",
    "SPEEDS",
    "TEST_FAMILIES",
    "TUNE_ESPEAK",
    "Clip",
    "Corpus",
    "build_corpus",
    "ensure_corpus",
    "espeak_base",
    "is_training_voice",
    "load_corpus",
    "read_wav",
    "real_recordings",
    "split_of",
    "write_wav",
]
