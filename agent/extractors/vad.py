"""Voice activity: Silero VAD (ONNX) per 32 ms window, and a segmenter that cuts utterances.

Between utterances an energy gate stands in front of the VAD: a window no louder than the
room's recent noise floor plus ``gate_db`` is silence without running the model (on a
2-core box each model call costs ~0.8 ms when it runs only every 32 ms, a quiet room's
largest cost). The floor is a low percentile of the last few seconds' window levels, so a
fan or a fridge raises it; speech at 10 dB SNR and more still opens the gate.

An utterance ends after ``min_silence_ms`` of silence, or sooner: once ``endpoint_ms`` of
silence has passed, the utterance so far is offered to an ``endpoint`` check (the pipeline asks
the recognizer whether it is a complete command) and ends there when the check says so. A
pause inside a phrase ("turn on … the light") is then not cut, yet a finished command is
decided without waiting out the whole hangover. After the first silent window
(``PREFETCH_LEAD_WINDOWS`` before that check), the utterance as it will then be (less the
windows still to come) goes to a ``prefetch`` hook, so the recognizer does most of its work
while they are being recorded.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agent.config.sections import VadConfig
from agent.core.media import AUDIO_RATE, AudioChunk
from agent.errors import ExtractorError
from agent.runtimes.base import Session

_LOGGER = logging.getLogger(__name__)

WINDOW = 512  # Silero at 16 kHz takes 512-sample windows ...
CONTEXT = 64  # ... each prefixed by the last 64 samples of the previous one.
# The noise floor: this percentile of the last FLOOR_WINDOWS window levels (~3.2 s),
# recomputed every FLOOR_EVERY windows. Not the minimum: room noise swings ~10 dB between
# 32 ms windows (pink noise: 35-45 dB re 1 LSB), its 20th percentile ~2.5 dB above the least.
FLOOR_WINDOWS = 100
FLOOR_PERCENTILE = 20
FLOOR_EVERY = 16
# Once open, the gate stays open this many windows (~0.3 s), so the model sees the onset
# of speech as one stretch and its state settles before it must decide.
GATE_HOLD_WINDOWS = 10
# The gate only closes after the model itself heard no speech for this long (~1 s): the short
# pauses of conversation keep the model running as without a gate, so what it cuts there does
# not change; a quiet room is gated after its first second.
GATE_ENGAGE_WINDOWS = 31
# While the gate is closed the model's state stays as it was and the windows it skips are
# kept (up to ~3 s). When the gate opens, a probe runs the last few of them and the new one on
# a scratch copy of that state. Only when the probe hears something that might be speech do all
# the kept windows go through the model, from the kept state, and get decided as they would
# have been had the model run all along: the same probabilities, so the same utterances (speech
# that began below the gate starts where it began). Room noise that opens the gate costs the
# probe only.
GATE_REPLAY_WINDOWS = 94
GATE_PROBE_WINDOWS = 4
# The probe's answer below which a window is silence: well under the hysteresis floor
# (threshold - 0.15), as the probe's state is only close to the model's.
PROBE_MARGIN = 0.25
NS_PER_SAMPLE = 1_000_000_000 / AUDIO_RATE
# The prefetch comes this many windows before the endpoint check (at most: never before the
# first silent window). Its work (~40 ms on a 2-core x86, ~100 ms with four rooms finishing at
# once) then overlaps the silence still to come instead of delaying the check; bench pairs4
# p95 404 / 393 / 286 ms with a lead of 1 / 2 / 3 windows.
PREFETCH_LEAD_WINDOWS = 3


class SpeechProbability(Protocol):
    def __call__(self, window: npt.NDArray[np.float32]) -> float: ...


VadState = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]


@runtime_checkable
class StatefulVad(Protocol):
    """A VAD whose answer depends on what it heard before; ``state`` saves and restores it."""

    state: VadState

    def __call__(self, window: npt.NDArray[np.float32]) -> float: ...


class SileroVad:
    """Stateful Silero VAD v5/v6 over a Session; one instance per audio stream."""

    def __init__(self, session: Session) -> None:
        names = {i.name for i in session.inputs}
        if not {"input", "state", "sr"} <= names:
            raise ExtractorError(f"not a Silero VAD model: inputs {sorted(names)}")
        self._session = session
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)

    @property
    def state(self) -> VadState:
        """The recurrent state and context (both replaced, never changed in place, per call)."""
        return self._state, self._context

    @state.setter
    def state(self, value: VadState) -> None:
        self._state, self._context = value

    def __call__(self, window: npt.NDArray[np.float32]) -> float:
        x = np.concatenate([self._context, window.reshape(1, WINDOW)], axis=1)
        out = self._session.run(
            {"input": x, "state": self._state, "sr": np.array(AUDIO_RATE, dtype=np.int64)}
        )
        self._state = out["stateN"].astype(np.float32)
        self._context = x[:, -CONTEXT:]
        return float(out["output"].reshape(-1)[0])


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """One utterance: padded samples plus the unpadded speech span on the agent clock."""

    start_ns: int
    end_ns: int
    samples: npt.NDArray[np.int16]
    peak_probability: float

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


EndpointCheck = Callable[["SpeechSegment"], bool]
# (the segment so far, its length in samples when the endpoint check will see it)
Prefetch = Callable[["SpeechSegment", int], None]


class Segmenter:
    """Turns a stream of chunks into speech segments (hysteresis, min speech, hangover)."""

    def __init__(
        self, cfg: VadConfig, vad: SpeechProbability, endpoint: EndpointCheck | None = None
    ) -> None:
        self._cfg = cfg
        self._vad = vad
        self._stateful = vad if isinstance(vad, StatefulVad) else None
        self.endpoint = endpoint  # set by the pipeline once its recognizer exists
        self.prefetch: Prefetch | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_t0: int | None = None  # agent time of _pending[0]
        self._pad = cfg.pad_ms * AUDIO_RATE // 1000
        # Between utterances the history keeps this many windows, the current one included:
        # the audio before a start of speech is the ones before it (224 ms for pad_ms 250).
        self._preroll_windows = max(1, -(-self._pad // WINDOW))
        # ... and no more when the energy gate held extra windows back (same segments).
        self._lead = min(self._pad, (self._preroll_windows - 1) * WINDOW)
        self._history: list[npt.NDArray[np.int16]] = []  # pre-roll + current segment windows
        self._hist_t0 = 0
        self._in_speech = False
        self._speech_start = 0
        self._last_speech_end = 0
        self._silence_windows = 0
        self._peak = 0.0
        self.windows = 0
        self.gated = 0  # windows the energy gate decided without the model
        self.replays = 0  # times the windows it held back went through the model
        self.quiet = False  # the last window was gated (room noise)
        self._quiet_run = 0  # windows in a row with no speech (gated, or the model said so)
        # Windows the model has not heard since the gate closed (see GATE_REPLAY_WINDOWS).
        self._held: deque[tuple[npt.NDArray[np.int16], int]] = deque(maxlen=GATE_REPLAY_WINDOWS)
        self._probe_state: VadState | None = None
        self._probe_floor = cfg.threshold - 0.15 - PROBE_MARGIN
        self.last_probability = 0.0
        self._levels: deque[float] = deque(maxlen=FLOOR_WINDOWS)
        self._floor: float | None = None
        self._open_until = 0

    def feed(self, chunk: AudioChunk) -> Iterator[SpeechSegment]:
        if self._pending_t0 is None or len(self._pending) == 0:
            self._pending_t0 = chunk.t_ns
            self._pending = chunk.samples  # the usual case: no copy
        else:
            self._pending = np.concatenate([self._pending, chunk.samples])
        while len(self._pending) >= WINDOW:
            window = self._pending[:WINDOW]
            t0 = self._pending_t0
            self._pending = self._pending[WINDOW:]
            self._pending_t0 = t0 + round(WINDOW * NS_PER_SAMPLE)
            yield from self._step(window, t0)

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def speech_start_ns(self) -> int | None:
        """Start of the utterance under way (None between utterances)."""
        return self._speech_start if self._in_speech else None

    def flush(self) -> Iterator[SpeechSegment]:
        """Close an open segment at end of stream."""
        if self._in_speech:
            seg = self._close(self._last_speech_end)
            if seg is not None:
                yield seg

    def _quiet(self, window: npt.NDArray[np.int16]) -> bool:
        """The energy gate: True when this window is room noise, not worth the model."""
        if self._cfg.gate_db <= 0:
            return False
        x = window.astype(np.float32)
        level = 10.0 * math.log10(float(x @ x) / len(x) + 1.0)  # dB re 1 LSB
        self._levels.append(level)
        if len(self._levels) == FLOOR_WINDOWS and self.windows % FLOOR_EVERY == 0:
            self._floor = float(np.percentile(self._levels, FLOOR_PERCENTILE))
        if (
            self._in_speech
            or self._floor is None  # just started: no floor yet
            or level >= self._floor + self._cfg.gate_db
        ):
            self._open_until = self.windows + GATE_HOLD_WINDOWS
            return False
        return self.windows >= self._open_until and self._quiet_run >= GATE_ENGAGE_WINDOWS

    def _step(self, window: npt.NDArray[np.int16], t0: int) -> list[SpeechSegment]:
        if not self._history:
            self._hist_t0 = t0
        self._history.append(window)
        if not self._in_speech:
            # Keep only the pre-roll while idle (the current window counts towards it), and
            # the windows the gate holds back for the model.
            keep = self._preroll_windows + len(self._held)
            if len(self._history) > keep:
                drop = len(self._history) - keep
                self._history = self._history[drop:]
                self._hist_t0 += round(drop * WINDOW * NS_PER_SAMPLE)
        self.quiet = self._quiet(window)
        self.windows += 1
        if self.quiet:  # never while in speech
            self.gated += 1
            self._quiet_run += 1
            self._held.append((window, t0))
            self._probe_state = None  # the next opening probes afresh
            self.last_probability = 0.0
            return []
        out = []
        if self._held:  # the gate is open, the model has not heard what it held back
            p = self._probe(window)
            if p < self._probe_floor:  # still no speech: decided so, the model stays put
                self._held.append((window, t0))
                self._quiet_run += 1
                self.last_probability = p
                return []
            out = self._replay()
        p = self._vad(window.astype(np.float32) / 32768.0)
        self.last_probability = p
        no_speech = not self._in_speech and p < self._cfg.threshold - 0.15
        self._quiet_run = self._quiet_run + 1 if no_speech else 0
        seg = self._advance(p, t0)
        if seg is not None:
            out.append(seg)
        return out

    def _probe(self, window: npt.NDArray[np.int16]) -> float:
        """The speech probability of ``window`` on a scratch copy of the model's state, warmed
        up on the last windows held back; the model's own state is left as it was."""
        x = window.astype(np.float32) / 32768.0
        vad = self._stateful
        if vad is None:  # stateless: its answer is the answer
            return self._vad(x)
        kept = vad.state
        if self._probe_state is None:
            for earlier, _ in list(self._held)[-GATE_PROBE_WINDOWS:]:
                vad(earlier.astype(np.float32) / 32768.0)
        else:
            vad.state = self._probe_state
        p = vad(x)
        self._probe_state = vad.state
        vad.state = kept
        return p

    def _replay(self) -> list[SpeechSegment]:
        """The held-back windows through the model, in order, decided as without a gate."""
        self.replays += 1
        out = []
        for earlier, earlier_t0 in self._held:
            seg = self._advance(self._vad(earlier.astype(np.float32) / 32768.0), earlier_t0)
            if seg is not None:
                out.append(seg)
        self._held.clear()
        self._probe_state = None
        return out

    def _advance(self, p: float, t0: int) -> SpeechSegment | None:
        """The utterance state after one window of speech probability ``p``."""
        t1 = t0 + round(WINDOW * NS_PER_SAMPLE)
        if not self._in_speech:
            if p >= self._cfg.threshold:
                self._in_speech = True
                self._speech_start = t0
                self._last_speech_end = t1
                self._silence_windows = 0
                self._peak = p
            return None
        # Hysteresis: once speaking, a lower probability still counts as speech.
        if p >= self._cfg.threshold - 0.15:
            self._last_speech_end = t1
            self._silence_windows = 0
            self._peak = max(self._peak, p)
        else:
            self._silence_windows += 1
        silence_ms = (t1 - self._last_speech_end) / 1e6
        too_long = (t1 - self._speech_start) / 1e9 >= self._cfg.max_segment_s
        if silence_ms >= self._cfg.min_silence_ms or too_long:
            return self._close(self._last_speech_end if not too_long else t1)
        wait = self._endpoint_windows()
        lead = min(PREFETCH_LEAD_WINDOWS, wait - 1)
        if lead > 0 and self._silence_windows == wait - lead and self.prefetch is not None:
            seg = self._segment(self._last_speech_end)
            if seg is not None:
                # At the check ``lead`` more windows will be in: the segment grows by them, up
                # to its padding.
                full = self._padded_samples(self._last_speech_end)
                self.prefetch(seg, min(full, len(seg.samples) + lead * WINDOW))
        if wait and self._silence_windows == wait and self.endpoint is not None:
            # Once per pause: is what was said so far already a whole command?
            seg = self._segment(self._last_speech_end)
            if seg is not None and self.endpoint(seg):
                self._reset()
                return seg
        return None

    def _endpoint_windows(self) -> int:
        """Silent windows after which the endpoint check runs (0: never)."""
        ms = self._cfg.endpoint_ms
        if ms <= 0 or ms >= self._cfg.min_silence_ms:
            return 0
        return max(1, -(-ms * AUDIO_RATE // (1000 * WINDOW)))

    def _segment(self, end_ns: int) -> SpeechSegment | None:
        """The utterance from its start to ``end_ns``, padded with the audio there is."""
        if (end_ns - self._speech_start) / 1e6 < self._cfg.min_speech_ms:
            return None
        audio = np.concatenate(self._history) if self._history else np.zeros(0, np.int16)
        start_idx, end_idx = self._span(end_ns)
        samples = audio[start_idx:end_idx].copy()
        return SpeechSegment(self._speech_start, end_ns, samples, self._peak)

    def _span(self, end_ns: int) -> tuple[int, int]:
        """History indices of the utterance to ``end_ns`` with its padding (the end index may
        lie beyond the audio recorded so far)."""
        start = round((self._speech_start - self._hist_t0) / NS_PER_SAMPLE)
        return max(0, start - self._lead), round(
            (end_ns - self._hist_t0) / NS_PER_SAMPLE
        ) + self._pad

    def _padded_samples(self, end_ns: int) -> int:
        """Samples ``_segment(end_ns)`` gives once all of its padding has been recorded."""
        start_idx, end_idx = self._span(end_ns)
        return end_idx - start_idx

    def _reset(self) -> None:
        self._in_speech = False
        self._history = []
        self._silence_windows = 0

    def _close(self, end_ns: int) -> SpeechSegment | None:
        seg = self._segment(end_ns)
        if seg is None:
            _LOGGER.debug("ignored %.0f ms speech burst", (end_ns - self._speech_start) / 1e6)
        self._reset()
        return seg
