"""Recorded media: a video file through OpenCV and a WAV file, stamped on media time.

Both start at media time 0, so replay puts them on one clock without any wall time.
"""

from __future__ import annotations

import logging
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.core.media import AUDIO_RATE, AudioChunk, Frame
from agent.errors import SourceError

_LOGGER = logging.getLogger(__name__)


class _Pacer:
    """Holds a file source back to real time when it stands in for a live device.

    Paced sources are stamped on the agent clock (anchored at the first read), so a file
    camera lines up with a real microphone; unpaced ones keep media time.
    """

    def __init__(self, paced: bool) -> None:
        self._paced = paced
        self._anchor_ns: int | None = None

    def stamp(self, media_ns: int, due_ns: int | None = None) -> int:
        if not self._paced:
            return media_ns
        if self._anchor_ns is None:
            self._anchor_ns = time.monotonic_ns()
        delay = (
            self._anchor_ns + (media_ns if due_ns is None else due_ns) - time.monotonic_ns()
        ) / 1e9
        if delay > 0:
            time.sleep(delay)
        return self._anchor_ns + media_ns


class VideoFileSource:
    live = False

    def __init__(
        self,
        path: Path,
        fps_cap: float | None = None,
        paced: bool = False,
        compressed: bool = True,
    ) -> None:
        import cv2

        from agent.sources.camera import keep_packets

        if not path.is_file():
            raise SourceError(f"video file not found: {path}")
        self.name = f"file://{path}"
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot open video {path}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < fps <= 1000:
            raise SourceError(f"video {path} does not state a frame rate")
        self.fps = fps
        # Keep every k-th frame when the file is faster than the configured cap.
        self._step = max(1, round(fps / fps_cap)) if fps_cap else 1
        self._index = 0
        self._pacer = _Pacer(paced)
        # As for a live MJPEG camera: frames stay JPEG until analysed.
        self.compressed = compressed and keep_packets(self._cap)

    def read(self) -> Frame | None:
        from agent.sources.camera import as_jpeg

        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                return None
            index = self._index
            self._index += 1
            if index % self._step == 0:
                t_ns = self._pacer.stamp(round(index * 1e9 / self.fps))
                jpeg = as_jpeg(image) if self.compressed else None
                if jpeg is not None:
                    return Frame(t_ns, index, jpeg=jpeg)
                return Frame(t_ns, index, np.ascontiguousarray(image))

    def close(self) -> None:
        self._cap.release()


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """A WAV file as 16 kHz mono int16 (mixes channels, resamples linearly if needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as err:
        raise SourceError(f"cannot read WAV {path}: {err}") from err
    if width != 2:
        raise SourceError(f"WAV {path} must be 16-bit PCM (is {8 * width}-bit)")
    data = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float32).mean(axis=1)
    if rate != AUDIO_RATE:
        n_out = int(len(data) * AUDIO_RATE / rate)
        data = np.interp(np.arange(n_out) * rate / AUDIO_RATE, np.arange(len(data)), data)
        _LOGGER.info("resampled %s from %d Hz to %d Hz", path.name, rate, AUDIO_RATE)
    out: npt.NDArray[np.int16] = np.clip(np.round(data), -32768, 32767).astype(np.int16)
    return out


class WavFileSource:
    live = False

    def __init__(self, path: Path, chunk_ms: int = 32, paced: bool = False) -> None:
        if not path.is_file():
            raise SourceError(f"audio file not found: {path}")
        self.name = f"file://{path}"
        self._samples = read_wav(path)
        self._chunk = chunk_ms * AUDIO_RATE // 1000
        self._pos = 0
        self._pacer = _Pacer(paced)

    @property
    def duration_s(self) -> float:
        return len(self._samples) / AUDIO_RATE

    def read(self) -> AudioChunk | None:
        if self._pos >= len(self._samples):
            return None
        start = self._pos
        self._pos = min(len(self._samples), start + self._chunk)
        # A live microphone delivers a chunk once it has been captured, at its end.
        t_ns = self._pacer.stamp(
            start * 1_000_000_000 // AUDIO_RATE, self._pos * 1_000_000_000 // AUDIO_RATE
        )
        return AudioChunk(t_ns, start, self._samples[start : self._pos])

    def close(self) -> None:
        self._pos = len(self._samples)
