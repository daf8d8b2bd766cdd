"""Live microphone through PyAudio (PortAudio), 16 kHz mono int16, callback capture.

The callback only stamps and copies bytes into a bounded queue, so capture never waits for
inference; a full queue drops the chunk and counts it (the sample counter then jumps, so the
gap is visible downstream). Devices that cannot give 16 kHz mono are opened at their own rate
and channel count, then mixed down and resampled here.

Timestamps: the sample count from stream start, anchored on the agent clock. Each callback
estimates when its first sample reached the ADC (PortAudio's ``input_buffer_adc_time`` when it
is nonzero, never later than one buffer before the callback); the anchor steps back at once
to any earlier estimate (scheduling only makes callbacks late) and otherwise slews slowly, so
a device clock that drifts from the monotonic clock is followed without jumps.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config.capture import MicrophoneConfig
from agent.core.clock import Clock
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.errors import SourceError

_LOGGER = logging.getLogger(__name__)

_SLEW_WINDOW = 64  # callbacks per anchor update
_SLEW_MAX_NS = 500_000  # at most 0.5 ms of anchor change per window (~250 ppm at 32 ms chunks)


_PORTAUDIO = threading.RLock()
"""Held around PortAudio's set-up and tear-down (Pa_Initialize, opening, closing, Pa_Terminate),
which are not thread-safe (nor is the ALSA configuration they parse): an agent with several
rooms opens its microphones from several capture threads, and two at once aborted the process.
It also keeps two threads from swapping fd 2 at once (see quiet_stderr)."""


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """PortAudio/ALSA print dozens of lines to fd 2 while probing; keep them out of our log.

    Under ``_PORTAUDIO``: a second thread doing the same at once would save the first one's
    /dev/null as "the" stderr and restore it, losing the log for good."""
    with _PORTAUDIO:
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


def _lowpass(cutoff: float, taps: int = 63) -> npt.NDArray[np.float64]:
    """Windowed-sinc low-pass FIR; ``cutoff`` as a fraction of the sample rate (0-0.5)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    out: npt.NDArray[np.float64] = h / h.sum()
    return out


class Resampler:
    """Streaming resampler: anti-alias FIR, then linear interpolation with carried phase."""

    def __init__(self, in_rate: int, out_rate: int = AUDIO_RATE) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._step = in_rate / out_rate
        self._fir = _lowpass(0.45 / self._step) if in_rate > out_rate else None
        taps = 0 if self._fir is None else len(self._fir)
        self._hist = np.zeros(max(0, taps - 1))
        self._buf = np.zeros(0)
        self._pos = 0.0

    def reset(self) -> None:
        self._hist[:] = 0
        self._buf = np.zeros(0)
        self._pos = 0.0

    def process(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.in_rate == self.out_rate:
            return x
        if self._fir is not None:
            padded = np.concatenate([self._hist, x])
            x = np.convolve(padded, self._fir, mode="valid")
            self._hist = padded[len(padded) - len(self._hist) :]
        buf = np.concatenate([self._buf, x])
        if len(buf) == 0 or self._pos > len(buf) - 1:
            self._buf = buf
            return np.zeros(0)
        n_out = math.floor((len(buf) - 1 - self._pos) / self._step) + 1
        idx = self._pos + np.arange(n_out) * self._step
        out: npt.NDArray[np.float64] = np.interp(idx, np.arange(len(buf)), buf)
        nxt = self._pos + n_out * self._step
        drop = min(int(nxt), len(buf))
        self._buf = buf[drop:]
        self._pos = nxt - drop
        return out


class PyAudioMicrophone:
    live = True

    def __init__(self, cfg: MicrophoneConfig, clock: Clock) -> None:
        try:
            import pyaudio
        except ImportError as err:
            raise SourceError("PyAudio is missing: pip install 'edge-agent[mic]'") from err
        self.name = cfg.source
        self._clock = clock
        self._read_timeout = cfg.read_timeout_s
        self._extra_latency_ns = int(cfg.latency_ms * 1e6)
        # SimpleQueue: put and get run in C. The callback runs ~31 times a second on
        # PortAudio's thread; queue.Queue's locking is Python code (~5 % of that thread).
        self._queue: queue.SimpleQueue[tuple[bytes, int, int]] = queue.SimpleQueue()
        self._max_queued = max(1, int(cfg.queue_seconds * 1000 / cfg.chunk_ms))
        self._pa_overflow = int(pyaudio.paInputOverflow)
        self._pa_continue = int(pyaudio.paContinue)
        # Written only by the PortAudio callback thread:
        self._cb_frames = 0
        self._cb_thread = 0  # the thread whose Python thread state is kept (see _keep_tstate)
        self._fallback_latency_ns = 0  # set after open(); the callback may run before that
        self.overflows = 0
        self.dropped_chunks = 0
        # Owned by the reading thread:
        self._dev_next = 0  # device frames consumed
        self._out_next = 0  # 16 kHz samples produced
        self.lost_samples = 0
        self._anchor_ns: int | None = None
        self._window_min: int | None = None
        self._window_n = 0
        self._last_t_ns = -(2**62)
        with _PORTAUDIO:
            with quiet_stderr():
                self._pa = pyaudio.PyAudio()
            try:
                device = _pick_device(self._pa, cfg.source)
                self._stream, self.rate, self.channels = self._open(pyaudio, device, cfg.chunk_ms)
            except (OSError, ValueError, SourceError) as err:
                self._pa.terminate()
                if isinstance(err, SourceError):
                    raise
                raise SourceError(f"cannot open microphone {cfg.source!r}: {err}") from err
        self._resampler = Resampler(self.rate)
        self._fallback_latency_ns = int(float(self._stream.get_input_latency()) * 1e9)
        _LOGGER.info(
            "microphone %s opened at %d Hz x%d (latency %.1f ms)",
            cfg.source,
            self.rate,
            self.channels,
            self._fallback_latency_ns / 1e6,
        )

    def _open(self, pyaudio: Any, device: int | None, chunk_ms: int) -> tuple[Any, int, int]:
        """16 kHz mono if the device takes it, else its own rate and channel count."""
        info = (
            self._pa.get_device_info_by_index(device)
            if device is not None
            else self._pa.get_default_input_device_info()
        )
        native = int(float(info.get("defaultSampleRate", AUDIO_RATE)))
        max_ch = max(1, int(info.get("maxInputChannels", 1)))
        tries = [(AUDIO_RATE, 1), (native, 1), (native, min(2, max_ch)), (48_000, min(2, max_ch))]
        last: Exception | None = None
        for rate, channels in dict.fromkeys(tries):
            try:
                with quiet_stderr():
                    stream = self._pa.open(
                        format=pyaudio.paInt16,
                        channels=channels,
                        rate=rate,
                        input=True,
                        input_device_index=device,
                        frames_per_buffer=max(16, chunk_ms * rate // 1000),
                        stream_callback=self._callback,
                    )
                return stream, rate, channels
            except (OSError, ValueError) as err:
                last = err
                _LOGGER.debug("microphone: %d Hz x%d refused: %s", rate, channels, err)
        raise SourceError(f"cannot open microphone {self.name!r}: {last}")

    def _callback(
        self, data: bytes | None, frames: int, info: Any, status: int
    ) -> tuple[None, int]:
        if self._cb_thread != threading.get_ident():
            self._keep_tstate()
        now = self._clock.now_ns()
        rate = getattr(self, "rate", AUDIO_RATE)
        buffer_ns = frames * 1_000_000_000 // rate
        adc = float(info.get("input_buffer_adc_time", 0.0) or 0.0) if info else 0.0
        cur = float(info.get("current_time", 0.0) or 0.0) if info else 0.0
        if adc > 0 and cur > 0 and 0 <= cur - adc < 2.0:
            # The first sample of a full buffer cannot be younger than the buffer.
            age_ns = max(int((cur - adc) * 1e9), buffer_ns)
        else:
            age_ns = buffer_ns + self._fallback_latency_ns
        if status & self._pa_overflow:
            self.overflows += 1
        first = self._cb_frames
        self._cb_frames += frames
        if self._queue.qsize() >= self._max_queued:
            self.dropped_chunks += 1  # counted, reported in stats; never silent
        else:
            self._queue.put((data or b"", first, now - age_ns))
        return None, self._pa_continue

    def _keep_tstate(self) -> None:
        """Keep this PortAudio thread's Python thread state between callbacks.

        PyAudio enters each callback with PyGILState_Ensure and leaves with PyGILState_Release.
        A thread Python did not start has no thread state of its own, so every callback built
        one and tore it down again, mapping and unmapping its frame stack: about half of the
        callback thread's CPU while idle. One more Ensure, never released, keeps the count
        above zero, so the state lives as long as the thread (one per stream opened; Python
        frees any left at exit). Release still hands the GIL back after every callback."""
        self._cb_thread = threading.get_ident()
        ctypes.pythonapi.PyGILState_Ensure()

    def _track(self, dev_first: int, est_ns: int) -> int:
        """The anchor (agent-clock time of device frame 0), following the callback estimates."""
        offset = est_ns - dev_first * 1_000_000_000 // self.rate
        if self._anchor_ns is None or offset < self._anchor_ns:
            # An estimate that the samples are older than the anchor says is proof (a callback
            # is never early): take it at once. Later estimates only pull the anchor slowly.
            self._anchor_ns = offset
        self._window_min = offset if self._window_min is None else min(self._window_min, offset)
        self._window_n += 1
        if self._window_n >= _SLEW_WINDOW:
            step = max(-_SLEW_MAX_NS, min(_SLEW_MAX_NS, self._window_min - self._anchor_ns))
            self._anchor_ns += step
            self._window_min, self._window_n = None, 0
        return self._anchor_ns

    def read(self, timeout: float | None = None) -> AudioChunk | None:
        """The next chunk; raises SourceError when the device stops delivering (lost)."""
        wait = self._read_timeout if timeout is None else timeout
        try:
            data, dev_first, est_ns = self._queue.get(timeout=wait)
        except queue.Empty as err:
            state = "stopped" if not self._stream.is_active() else "delivered nothing"
            raise SourceError(f"microphone {self.name} {state} for {wait:.1f} s") from err
        if dev_first != self._dev_next:  # chunks dropped on a full queue: skip the counter
            gap = dev_first - self._dev_next
            skipped = round(gap * AUDIO_RATE / self.rate)
            self.lost_samples += skipped
            self._out_next += skipped
            self._resampler.reset()
            _LOGGER.warning("microphone %s: %d samples dropped (queue full)", self.name, skipped)
        raw = np.frombuffer(data, dtype="<i2")
        self._dev_next = dev_first + len(raw) // self.channels
        if self.channels == 1 and self.rate == AUDIO_RATE:
            samples = raw.astype(np.int16)
        else:
            mono = raw.reshape(-1, self.channels).astype(np.float64).mean(axis=1)
            res = self._resampler.process(mono)
            samples = np.clip(np.round(res), -32768, 32767).astype(np.int16)
        anchor = self._track(dev_first, est_ns) - self._extra_latency_ns
        first = self._out_next
        self._out_next += len(samples)
        # Stamps never go backwards, even when the anchor just stepped back.
        t_ns = max(anchor + first * 1_000_000_000 // AUDIO_RATE, self._last_t_ns + 1)
        self._last_t_ns = t_ns
        return AudioChunk(t_ns, first, samples)

    def waiting(self) -> int:
        """Chunks captured and not read yet."""
        return self._queue.qsize()

    def stats(self) -> dict[str, int]:
        return {
            "overflows": self.overflows,
            "dropped_chunks": self.dropped_chunks,
            "lost_samples": self.lost_samples,
            "rate": self.rate,
            "channels": self.channels,
        }

    def close(self) -> None:
        # Pa_CloseStream aborts an active stream: it does not wait on a device that hangs.
        started = time.monotonic()
        try:
            with quiet_stderr():  # (under _PORTAUDIO)
                self._stream.close()
        finally:
            with quiet_stderr():
                self._pa.terminate()
        _LOGGER.debug("microphone %s closed in %.3f s", self.name, time.monotonic() - started)
