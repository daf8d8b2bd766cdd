"""Pure media types. Every timestamp is on the one agent clock, in nanoseconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

AUDIO_RATE = 16_000
"""Every audio chunk inside the agent is 16 kHz mono int16."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame (BGR, uint8) stamped at capture."""

    t_ns: int
    index: int
    image: npt.NDArray[np.uint8]

    @property
    def t(self) -> float:
        return self.t_ns / 1e9


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Contiguous 16 kHz mono int16 samples; ``t_ns`` stamps the first sample.

    ``first_sample`` counts samples from stream start, so gaps are detectable.
    """

    t_ns: int
    first_sample: int
    samples: npt.NDArray[np.int16]

    @property
    def t(self) -> float:
        return self.t_ns / 1e9

    @property
    def end_ns(self) -> int:
        return self.t_ns + len(self.samples) * 1_000_000_000 // AUDIO_RATE
