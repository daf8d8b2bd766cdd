"""Pure media types. Every timestamp is on the one agent clock, in nanoseconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

AUDIO_RATE = 16_000
"""Every audio chunk inside the agent is 16 kHz mono int16."""


class Frame:
    """One camera frame stamped at capture: a decoded BGR uint8 image, or the camera's own
    JPEG bytes decoded on first use (``image``).

    Most frames are never analysed (presence looks at about one a second, a decision at a
    few around each utterance), so a source that delivers JPEG keeps it compressed: the
    ring then holds ~20 KB a frame instead of ~900 KB, and nothing decodes what nobody reads.
    """

    __slots__ = ("_image", "_jpeg", "index", "t_ns")

    def __init__(
        self,
        t_ns: int,
        index: int,
        image: npt.NDArray[np.uint8] | None = None,
        *,
        jpeg: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        if image is None and jpeg is None:
            raise ValueError("a frame needs an image or its JPEG bytes")
        self.t_ns = t_ns
        self.index = index
        self._image = image
        self._jpeg = jpeg

    @property
    def t(self) -> float:
        return self.t_ns / 1e9

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """The decoded image (decoded on first use, kept until ``compact``; threads may
        race to decode the same frame, which is harmless)."""
        image = self._image  # one read: compact() may clear the attribute meanwhile
        if image is None:
            import cv2

            assert self._jpeg is not None
            decoded = cv2.imdecode(self._jpeg, cv2.IMREAD_COLOR)
            if decoded is None:
                raise ValueError(f"frame {self.index}: undecodable JPEG")
            image = np.ascontiguousarray(decoded)
            self._image = image
        return image

    def thumbnail(self, width: int = 40, height: int = 30) -> npt.NDArray[np.float32]:
        """A tiny grey version for motion checks; from JPEG it decodes at 1/8 scale
        (a fraction of a full decode) and leaves the frame undecoded."""
        import cv2

        if self._jpeg is None or self._image is not None:
            grey = cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)
        else:
            reduced = cv2.imdecode(self._jpeg, cv2.IMREAD_REDUCED_GRAYSCALE_8)
            if reduced is None:
                raise ValueError(f"frame {self.index}: undecodable JPEG")
            grey = reduced
        small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        return np.asarray(small, dtype=np.float32)

    def compact(self) -> None:
        """Drop the decoded image of a JPEG frame (it decodes again if asked)."""
        if self._jpeg is not None:
            self._image = None

    @property
    def decoded(self) -> bool:
        return self._image is not None

    @property
    def nbytes(self) -> int:
        """Bytes this frame holds (JPEG and, once decoded, the image)."""
        n = 0 if self._image is None else self._image.nbytes
        return n + (0 if self._jpeg is None else self._jpeg.nbytes)

    def __repr__(self) -> str:
        kind = "decoded" if self._image is not None else "jpeg"
        return f"Frame(t_ns={self.t_ns}, index={self.index}, {kind})"


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


def join_chunks(chunks: list[AudioChunk]) -> list[AudioChunk]:
    """Runs of contiguous chunks joined into one chunk each (a gap starts a new one).

    While nothing is going on the audio is taken in batches, and one call per batch costs
    less than one per chunk; the samples and their clock are the same."""
    out: list[AudioChunk] = []
    run: list[AudioChunk] = []
    for c in chunks:
        if run and c.first_sample != run[-1].first_sample + len(run[-1].samples):
            out.append(_joined(run))
            run = []
        run.append(c)
    if run:
        out.append(_joined(run))
    return out


def _joined(run: list[AudioChunk]) -> AudioChunk:
    if len(run) == 1:
        return run[0]
    return AudioChunk(run[0].t_ns, run[0].first_sample, np.concatenate([c.samples for c in run]))
