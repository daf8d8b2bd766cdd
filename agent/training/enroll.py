"""``edge-agent enroll``: a household records its own phrases for ``train`` to adapt to.

Takes come from WAV files or the live microphone; either way the agent's own VAD cuts each
take, so the stored clip is what the recognizer would be given. Layout of the folder::

    <dir>/<phrase with underscores>/take-NNN.wav     (16 kHz mono int16)

Recordings stay on the box (or the PC that trains); nothing is sent anywhere.
"""

from __future__ import annotations

import logging
import re
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.config.schema import AgentConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.errors import ConfigError, SourceError
from agent.extractors.speech import normalize_phrase
from agent.extractors.vad import Segmenter, SileroVad, SpeechSegment
from agent.models.store import ModelStore
from agent.sources.files import read_wav

_LOGGER = logging.getLogger(__name__)

CHUNK = 512  # samples fed to the VAD at once (32 ms)
_TAKE = re.compile(r"^take-(\d+)\.wav$")


def phrase_dir(root: Path, phrase: str) -> Path:
    return root / normalize_phrase(phrase).replace(" ", "_")


def read_enrollment(root: Path) -> Iterator[tuple[str, npt.NDArray[np.int16]]]:
    """(phrase, samples) for every stored take, in a stable order."""
    if not root.is_dir():
        raise SourceError(f"enrollment folder {root} does not exist")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        phrase = folder.name.replace("_", " ")
        for take in sorted(folder.glob("take-*.wav")):
            yield phrase, read_wav(take)


MAX_TAKE_S = 3.0  # the command model's window: a longer take cannot be trained on


def write_take(root: Path, phrase: str, samples: npt.NDArray[np.int16]) -> Path:
    if len(samples) > MAX_TAKE_S * AUDIO_RATE:
        _LOGGER.warning(
            "take of %r is %.1f s, longer than the command model's %.0f s window: "
            "`train` will skip it; leave less silence and noise around the phrase",
            phrase,
            len(samples) / AUDIO_RATE,
            MAX_TAKE_S,
        )
    folder = phrase_dir(root, phrase)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _TAKE.match(p.name))]
    path = folder / f"take-{max(numbers, default=0) + 1:03d}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return path


def load_vad(cfg: AgentConfig) -> SileroVad:
    """The configured VAD, loaded once per command (not once per take or file)."""
    session, _ = ModelStore(cfg.models.dir).load(cfg.vad.model, runtimes=cfg.runtimes)
    return SileroVad(session)


def _segmenter(cfg: AgentConfig, vad: SileroVad) -> Segmenter:
    vad.reset()  # each take or file starts a new stream
    return Segmenter(cfg.vad, vad)


def cut(cfg: AgentConfig, vad: SileroVad, samples: npt.NDArray[np.int16]) -> list[SpeechSegment]:
    """VAD segments of a recording, as the running agent would cut them."""
    seg = _segmenter(cfg, vad)
    out: list[SpeechSegment] = []
    for k in range(0, len(samples), CHUNK):
        part = samples[k : k + CHUNK]
        out.extend(seg.feed(AudioChunk(k * 1_000_000_000 // AUDIO_RATE, k, part)))
    out.extend(seg.flush())
    return out


def longest(segments: list[SpeechSegment]) -> SpeechSegment | None:
    return max(segments, key=lambda s: len(s.samples), default=None)


def check_phrase(cfg: AgentConfig, phrase: str) -> str:
    wanted = normalize_phrase(phrase)
    known = {normalize_phrase(p) for ps in cfg.intents.values() for p in ps}
    if wanted not in known:
        raise ConfigError([f"enroll: {phrase!r} is not a configured phrase ({sorted(known)})"])
    return wanted


def enroll_files(cfg: AgentConfig, root: Path, phrase: str, files: list[Path]) -> list[Path]:
    """One take per file: the longest speech segment the VAD finds in it."""
    wanted = check_phrase(cfg, phrase)
    vad = load_vad(cfg)
    written = []
    for f in files:
        best = longest(cut(cfg, vad, read_wav(f)))
        if best is None:
            _LOGGER.warning("%s: no speech found; skipped", f)
            continue
        written.append(write_take(root, wanted, best.samples))
    return written


def enroll_microphone(
    cfg: AgentConfig, root: Path, phrase: str, takes: int, timeout_s: float = 8.0
) -> list[Path]:
    """Record ``takes`` takes from the configured microphone, one utterance each."""
    from agent.core.clock import MonotonicClock
    from agent.sources.microphone import PyAudioMicrophone

    wanted = check_phrase(cfg, phrase)
    vad = load_vad(cfg)  # before the microphone opens: no audio waits on it
    mic = PyAudioMicrophone(cfg.microphone, MonotonicClock())
    written: list[Path] = []
    try:
        for n in range(takes):
            print(f"take {n + 1}/{takes}: say {wanted!r} now", flush=True)
            seg = _segmenter(cfg, vad)
            found: SpeechSegment | None = None
            deadline = time.monotonic() + timeout_s
            while found is None and time.monotonic() < deadline:
                chunk = mic.read(timeout=0.5)
                if chunk is None:
                    continue
                found = next(iter(seg.feed(chunk)), None)
            if found is None:
                found = longest(list(seg.flush()))
            if found is None:
                print("  no speech heard; skipped", flush=True)
                continue
            written.append(write_take(root, wanted, found.samples))
            print(f"  kept {found.duration_s:.2f} s -> {written[-1]}", flush=True)
    finally:
        mic.close()
    return written


__all__ = ["cut", "enroll_files", "enroll_microphone", "read_enrollment", "write_take"]
