"""Supervised capture: one thread per device, reconnects with capped jittered backoff.

- Camera: a capture thread reads (every read bounded by the read deadline) into a one-frame
  slot; a separate thread hands frames to the consumer. When the consumer is slower than the
  camera, the newest frame wins and each overwritten frame is counted as dropped, so slow
  processing never stalls the camera (or anything else).
- Microphone: PortAudio's callback fills a bounded queue; this thread drains it into the
  consumer. A device that stops delivering is closed and reopened; the sample counter keeps
  running across the reopen, advanced by the time the device was gone, so every gap shows.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.config.capture import CameraConfig, MicrophoneConfig
from agent.core.clock import Clock
from agent.core.media import AUDIO_RATE, AudioChunk, Frame, join_chunks
from agent.errors import SourceError
from agent.sources.base import AudioSource, VideoSource, open_audio, open_video

_LOGGER = logging.getLogger(__name__)

_MAX_JOIN = 64  # chunks joined into one consumer call at most (~2 s at 32 ms)

VideoOpener = Callable[[CameraConfig, Clock], VideoSource]
AudioOpener = Callable[[MicrophoneConfig, Clock], AudioSource]


class Backoff:
    """Capped exponential backoff with +/- ``jitter`` fraction of random spread.

    The cap holds after jitter too: ``backoff_max_s: 30`` never waits 35 s.
    """

    def __init__(
        self, initial: float, maximum: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self._initial = initial
        self._max = max(initial, maximum)
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._next = initial

    def reset(self) -> None:
        self._next = self._initial

    def next(self) -> float:
        base = self._next
        self._next = min(self._next * 2, self._max)
        return min(self._max, max(0.0, base * (1 + self._rng.uniform(-self._jitter, self._jitter))))


class LatestFrame:
    """A one-frame slot: put() replaces an unconsumed frame and counts it as dropped."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class _Lag:
    """Median of recent (arrival - capture stamp) in ms."""

    def __init__(self, n: int = 200) -> None:
        self._ms: deque[float] = deque(maxlen=n)

    def add(self, now_ns: int, t_ns: int) -> None:
        self._ms.append((now_ns - t_ns) / 1e6)

    def median(self) -> float | None:
        return round(statistics.median(self._ms), 2) if self._ms else None


class CameraSupervisor:
    def __init__(
        self,
        cfg: CameraConfig,
        clock: Clock,
        on_frame: Callable[[Frame], None],
        *,
        opener: VideoOpener | None = None,
        rng: random.Random | None = None,
        room: str | None = None,
    ) -> None:
        self._suffix = f"-{room}" if room else ""  # thread names tell the rooms apart
        self.cfg = cfg
        self._clock = clock
        self._on_frame = on_frame
        self._opener = opener or (lambda c, k: open_video(c, k))
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.backoff_jitter, rng)
        self._slot = LatestFrame()
        self._stop = threading.Event()
        self._deadline_ns = int(cfg.read_timeout_s * 1e9)
        self._connected = False
        self._last_frame_ns: int | None = None
        self.frames = 0
        self.delivered = 0
        self.reconnects = 0
        self.failures = 0
        self.stalls = 0
        self.last_delay_s = 0.0  # the reconnect delay most recently waited
        self.skipped = 0
        self._skipped_before = 0
        self.decode_ms: deque[float] = deque(maxlen=200)
        self.lag = _Lag()
        self.transitions: list[tuple[int, str]] = []  # (clock ns, state), last 100
        self._state = "offline"
        self._threads = [
            threading.Thread(target=self._capture, name=f"camera{self._suffix}", daemon=True),
            threading.Thread(
                target=self._deliver, name=f"camera-frames{self._suffix}", daemon=True
            ),
        ]

    # -- public -------------------------------------------------------------------------
    def start(self) -> CameraSupervisor:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def alive(self) -> bool:
        """Both threads still running (a dead one is a bug the watchdog must report)."""
        return all(t.is_alive() for t in self._threads)

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    @property
    def state(self) -> str:
        """'online' while frames arrive within the read deadline, else 'offline'."""
        last = self._last_frame_ns
        fresh = last is not None and self._clock.now_ns() - last <= self._deadline_ns
        return "online" if self._connected and fresh else "offline"

    def stats(self) -> dict[str, Any]:
        decode = sorted(self.decode_ms)
        return {
            "state": self.state,
            "frames": self.frames,
            "frames_delivered": self.delivered,
            "frames_dropped": self.dropped,
            "frames_skipped_fps_cap": self.skipped,
            "reconnects": self.reconnects,
            "open_failures": self.failures,
            "stalls": self.stalls,
            "decode_ms": round(decode[len(decode) // 2], 3) if decode else None,
            "lag_ms": self.lag.median(),
        }

    # -- threads ------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.transitions.append((self._clock.now_ns(), state))
            del self.transitions[:-100]
            _LOGGER.info("camera %s", state)

    def _capture(self) -> None:
        ever_opened = False
        while not self._stop.is_set():
            try:
                cam = self._opener(self.cfg, self._clock)
            except SourceError as err:
                self.failures += 1
                delay = self.last_delay_s = self._backoff.next()
                _LOGGER.warning("camera: %s; retrying in %.1f s", err, delay)
                self._stop.wait(delay)
                continue
            except Exception:
                _LOGGER.exception("camera: unexpected error while opening")
                self._stop.wait(self._backoff.next())
                continue
            if ever_opened:
                self.reconnects += 1
            ever_opened = True
            self._backoff.reset()
            self._connected = True
            try:
                self._read_until_failure(cam)
            finally:
                self._connected = False
                self._set_state("offline")
                self._skipped_before += int(getattr(cam, "skipped", 0))
                cam.close()
            if not self._stop.is_set():
                self.last_delay_s = self._backoff.next()
                self._stop.wait(self.last_delay_s)

    def _read_until_failure(self, cam: VideoSource) -> None:
        while not self._stop.is_set():
            try:
                frame = cam.read()
            except SourceError as err:
                self.stalls += "stopped delivering" in str(err)
                _LOGGER.warning("camera: %s", err)
                return
            except Exception:
                _LOGGER.exception("camera: unexpected error while reading")
                return
            if frame is None:
                _LOGGER.info("camera %s: end of stream", cam.name)
                return
            now = self._clock.now_ns()
            self._last_frame_ns = now
            self.frames += 1
            self.lag.add(now, frame.t_ns)
            self.skipped = int(getattr(cam, "skipped", 0)) + self._skipped_before
            decode = getattr(cam, "decode_ms", None)
            if isinstance(decode, float):
                self.decode_ms.append(decode)
            self._set_state("online")
            self._slot.put(frame)

    def _deliver(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.get(timeout=0.5)
            if frame is None:
                if self._state == "online" and self.state == "offline":
                    self._set_state("offline")  # read deadline passed inside a hung read
                continue
            try:
                self._on_frame(frame)
                self.delivered += 1
            except Exception:
                _LOGGER.exception("camera: frame consumer failed")


class MicrophoneSupervisor:
    LOG_EVERY_S = 10.0  # a consumer that fails on every chunk logs once per this

    def __init__(
        self,
        cfg: MicrophoneConfig,
        clock: Clock,
        on_chunk: Callable[[AudioChunk], None],
        *,
        on_end: Callable[[], None] | None = None,
        opener: AudioOpener | None = None,
        rng: random.Random | None = None,
        idle: Callable[[], bool] | None = None,
        room: str | None = None,
    ) -> None:
        self._suffix = f"-{room}" if room else ""  # thread names tell the rooms apart
        self.cfg = cfg
        self._clock = clock
        self._on_chunk = on_chunk
        self._on_end = on_end
        # While the consumer says nothing is going on, chunks are taken in batches: one
        # wake-up per idle_batch_ms instead of one per chunk (each costs cold caches).
        self._idle = idle
        self._idle_wait_s = cfg.idle_batch_ms / 1000.0
        self._opener = opener or (lambda c, k: open_audio(c, k))
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, 0.2, rng)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"audio{self._suffix}", daemon=True)
        self._next_sample = 0  # counter across reopens
        self._end_ns: int | None = None
        self.samples = 0
        self.chunks = 0
        self.reopens = 0
        self.failures = 0
        self.gaps = 0
        self.gap_samples = 0
        self.overflows = 0
        self.dropped_chunks = 0
        self.state = "offline"
        self.lag = _Lag()
        self._mic: AudioSource | None = None
        self._closed_stats: dict[str, int] = {}
        self.consumer_failures = 0
        self._failure_logged = -float("inf")

    def start(self) -> MicrophoneSupervisor:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        live = dict(self._closed_stats)
        mic = self._mic
        counters = getattr(mic, "stats", None)
        if callable(counters):
            for k, v in counters().items():
                if k in ("overflows", "dropped_chunks", "lost_samples"):
                    live[k] = live.get(k, 0) + int(v)
        return {
            "state": self.state,
            "samples": self.samples,
            "chunks": self.chunks,
            "reopens": self.reopens,
            "open_failures": self.failures,
            "gaps": self.gaps,
            "gap_samples": self.gap_samples,
            "overflows": live.get("overflows", 0),
            "dropped_chunks": live.get("dropped_chunks", 0),
            "consumer_failures": self.consumer_failures,
            "lag_ms": self.lag.median(),
        }

    def _run(self) -> None:
        opened = False
        while not self._stop.is_set():
            try:
                mic = self._opener(self.cfg, self._clock)
            except SourceError as err:
                self.failures += 1
                delay = self._backoff.next()
                _LOGGER.warning("microphone: %s; retrying in %.1f s", err, delay)
                self._stop.wait(delay)
                continue
            if opened:
                self.reopens += 1
            opened = True
            self._backoff.reset()
            self._mic = mic
            ended = False
            try:
                ended = self._drain(mic)
            finally:
                self.state = "offline"
                self._mic = None
                counters = getattr(mic, "stats", None)
                if callable(counters):
                    for k, v in counters().items():
                        if k in ("overflows", "dropped_chunks", "lost_samples"):
                            self._closed_stats[k] = self._closed_stats.get(k, 0) + int(v)
                try:
                    mic.close()
                except SourceError as err:
                    _LOGGER.warning("microphone: closing: %s", err)
            if ended:
                _LOGGER.warning("microphone stream ended")
                if self._on_end is not None:
                    self._on_end()
                return
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next())

    def _drain(self, mic: AudioSource) -> bool:
        """Chunks to the consumer until the device fails (False) or the stream ends (True)."""
        base: int | None = None
        joined: deque[AudioChunk] = deque()
        waited = False
        while not self._stop.is_set():
            chunk: AudioChunk | None
            if joined:
                chunk = joined.popleft()
            else:
                try:
                    chunk = mic.read()
                except SourceError as err:
                    _LOGGER.warning("microphone: %s", err)
                    return False
                except Exception:
                    _LOGGER.exception("microphone: unexpected error while reading")
                    return False
                if chunk is None:
                    return True
                if waited:
                    # What came in during the idle wait goes to the consumer in one call.
                    joined.extend(join_chunks([chunk, *self._queued(mic)]))
                    chunk = joined.popleft()
                    waited = False
            if base is None:
                base = self._rebase(chunk)
            if base:
                chunk = AudioChunk(chunk.t_ns, chunk.first_sample + base, chunk.samples)
            self.state = "online"
            self._next_sample = chunk.first_sample + len(chunk.samples)
            self._end_ns = chunk.end_ns
            self.samples += len(chunk.samples)
            self.chunks += 1
            self.lag.add(self._clock.now_ns(), chunk.end_ns)
            try:
                self._on_chunk(chunk)
            except Exception as err:
                self._consumer_failed(err)
            if self._idle is not None and self._idle_wait_s > 0 and self._idle() and not joined:
                waiting = getattr(mic, "waiting", None)
                if waiting is None or waiting() == 0:
                    self._stop.wait(self._idle_wait_s)  # the device queues meanwhile
                    waited = waiting is not None
        return False

    @staticmethod
    def _queued(mic: AudioSource) -> list[AudioChunk]:
        """The chunks the device has queued (read without waiting); a read that fails is left
        to the next ordinary read, which reports it."""
        waiting = getattr(mic, "waiting", None)
        out: list[AudioChunk] = []
        for _ in range(min(waiting() if waiting is not None else 0, _MAX_JOIN)):
            try:
                chunk = mic.read()
            except Exception:  # reported by the next ordinary read
                break
            if chunk is None:
                break
            out.append(chunk)
        return out

    def _consumer_failed(self, err: Exception) -> None:
        """Counted always; logged with its traceback at most once per ``LOG_EVERY_S``."""
        self.consumer_failures += 1
        now = time.monotonic()
        if now - self._failure_logged < self.LOG_EVERY_S:
            return
        _LOGGER.error(
            "microphone: chunk consumer failed (%d failures so far; next report in %.0f s)",
            self.consumer_failures,
            self.LOG_EVERY_S,
            exc_info=err,
        )
        self._failure_logged = now

    def _rebase(self, chunk: AudioChunk) -> int:
        """Offset for a reopened stream's counter: continue, skipping the time it was gone."""
        if self._end_ns is None:
            return 0
        gap = max(0, round((chunk.t_ns - self._end_ns) * AUDIO_RATE / 1e9))
        if gap:
            self.gaps += 1
            self.gap_samples += gap
            _LOGGER.warning(
                "microphone: %.2f s of audio missing while the device was gone", gap / AUDIO_RATE
            )
        return self._next_sample + gap - chunk.first_sample


class Capture:
    """Camera and microphone supervisors together, with the stats the agent publishes."""

    def __init__(
        self,
        camera: CameraConfig,
        microphone: MicrophoneConfig,
        clock: Clock,
        on_frame: Callable[[Frame], None],
        on_chunk: Callable[[AudioChunk], None],
        on_audio_end: Callable[[], None] | None = None,
        idle: Callable[[], bool] | None = None,
        room: str | None = None,
    ) -> None:
        """``room``: the room's id when the agent serves several (names the threads)."""
        self.camera = CameraSupervisor(camera, clock, on_frame, room=room)
        self.microphone = MicrophoneSupervisor(
            microphone, clock, on_chunk, on_end=on_audio_end, idle=idle, room=room
        )

    def start(self) -> Capture:
        self.microphone.start()
        self.camera.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.camera.stop(timeout)
        self.microphone.stop(timeout)

    def stats(self) -> dict[str, Any]:
        cam, mic = self.camera.stats(), self.microphone.stats()
        skew = None
        if cam["lag_ms"] is not None and mic["lag_ms"] is not None:
            skew = round(cam["lag_ms"] - mic["lag_ms"], 2)
        return {"camera": cam, "microphone": mic, "av_skew_ms": skew}
