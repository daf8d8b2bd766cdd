"""Live microphone through PyAudio (PortAudio), 16 kHz mono int16, callback capture.

The callback only copies bytes into a bounded queue, so capture never waits for inference.
Timestamps come from the sample count, anchored once at stream start on the agent clock.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from agent.config.capture import MicrophoneConfig
from agent.core.clock import Clock
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.errors import SourceError

_LOGGER = logging.getLogger(__name__)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """PortAudio/ALSA print dozens of lines to fd 2 while probing; keep them out of our log."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _pick_device(pa: Any, source: str) -> int | None:
    """None means PortAudio's default input."""
    spec = source.removeprefix("pyaudio://")
    if spec in ("", "default"):
        return None
    if spec.isdigit():
        return int(spec)
    names = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) > 0:
            names.append(str(info.get("name")))
            if spec.lower() in str(info.get("name", "")).lower():
                return i
    raise SourceError(f"no input device matching {spec!r}; inputs: {names or 'none'}")


class PyAudioMicrophone:
    live = True

    def __init__(self, cfg: MicrophoneConfig, clock: Clock) -> None:
        try:
            import pyaudio
        except ImportError as err:
            raise SourceError("PyAudio is missing: pip install 'edge-agent[mic]'") from err
        self.name = cfg.source
        self._clock = clock
        self._frames_per_chunk = cfg.chunk_ms * AUDIO_RATE // 1000
        self._queue: queue.Queue[bytes] = queue.Queue(
            maxsize=max(1, int(cfg.queue_seconds * 1000 / cfg.chunk_ms))
        )
        self._anchor_ns: int | None = None
        self._latency_ns = 0  # set after open(); the callback may run before that
        self._next_sample = 0
        self.overflows = 0
        self.dropped_chunks = 0
        with quiet_stderr():
            self._pa = pyaudio.PyAudio()
        try:
            device = _pick_device(self._pa, cfg.source)
            with quiet_stderr():
                self._stream = self._pa.open(
                    format=pyaudio.paInt16,
                    channels=1,
                    rate=AUDIO_RATE,
                    input=True,
                    input_device_index=device,
                    frames_per_buffer=self._frames_per_chunk,
                    stream_callback=self._callback,
                )
        except (OSError, ValueError) as err:
            self._pa.terminate()
            raise SourceError(f"cannot open microphone {cfg.source!r}: {err}") from err
        self._latency_ns = int(float(self._stream.get_input_latency()) * 1e9)
        _LOGGER.info("microphone %s opened (latency %.1f ms)", cfg.source, self._latency_ns / 1e6)

    def _callback(
        self, data: bytes | None, frames: int, info: Any, status: int
    ) -> tuple[None, int]:
        import pyaudio

        if self._anchor_ns is None:
            # The first buffer ended now; its first sample was captured one buffer earlier.
            # The input latency is subtracted in read(), once it is known.
            self._anchor_ns = self._clock.now_ns() - frames * 1_000_000_000 // AUDIO_RATE
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        try:
            self._queue.put_nowait(data or b"")
        except queue.Full:
            self.dropped_chunks += 1  # counted, reported in stats; never silent
        return None, pyaudio.paContinue

    def read(self, timeout: float = 1.0) -> AudioChunk | None:
        try:
            data = self._queue.get(timeout=timeout)
        except queue.Empty as err:
            if not self._stream.is_active():
                return None
            raise SourceError(
                f"microphone {self.name} delivered nothing for {timeout:.1f} s"
            ) from err
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        first = self._next_sample
        self._next_sample += len(samples)
        anchor = (self._anchor_ns or 0) - self._latency_ns
        return AudioChunk(anchor + first * 1_000_000_000 // AUDIO_RATE, first, samples)

    def close(self) -> None:
        try:
            self._stream.stop_stream()
            self._stream.close()
        finally:
            self._pa.terminate()
