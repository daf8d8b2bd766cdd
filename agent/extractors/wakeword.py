"""Wake words: microWakeWord int8 streaming models over a Session, one shared front-end.

Audio (16 kHz int16) -> 40 log-mel-like features every 10 ms (the TFLite-Micro audio
front-end from ``pymicro-features``, the one the models were trained with) -> every
``stride`` feature rows (30 ms) one int8 inference per model -> the mean of the last
``sliding_window`` probabilities; a detection fires when it exceeds the model's cutoff.

The models keep their streaming state inside the interpreter (resource variables), so each
detector must own its sessions and be fed one continuous stream.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.core.media import AUDIO_RATE
from agent.errors import ExtractorError, ModelError
from agent.runtimes.base import Session

_LOGGER = logging.getLogger(__name__)

FEATURES = 40
FEATURE_STEP = 160  # samples per feature row (10 ms)
_MAX_ROWS_PER_CALL = 100_000  # bound on the feature loop (about 17 minutes of audio per call)


@dataclass(frozen=True, slots=True)
class Detection:
    """A wake word heard; ``t_offset`` is seconds of audio fed before it fired."""

    name: str
    t_offset: float
    probability: float


@dataclass(frozen=True, slots=True)
class WakeWordParams:
    """What the manifest says about one model (quantization and decision rule)."""

    name: str
    phrase: str
    probability_cutoff: float
    sliding_window: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @classmethod
    def from_manifest(
        cls, name: str, preprocess: dict[str, Any], postprocess: dict[str, Any]
    ) -> WakeWordParams:
        """Build from a model manifest's ``preprocess`` / ``postprocess`` sections."""
        try:
            return cls(
                name=name,
                phrase=str(postprocess.get("wake_word", name)),
                probability_cutoff=float(postprocess["probability_cutoff"]),
                sliding_window=int(postprocess["sliding_window_size"]),
                input_scale=float(preprocess["input_scale"]),
                input_zero_point=int(preprocess["input_zero_point"]),
                output_scale=float(postprocess["output_scale"]),
                output_zero_point=int(postprocess["output_zero_point"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{name}: manifest lacks wake-word parameters ({err})") from err


class FeatureFrontend(Protocol):
    """Turns int16 samples into feature rows (``FEATURES`` floats each), keeping a remainder."""

    def __call__(self, samples: npt.NDArray[np.int16]) -> list[npt.NDArray[np.float32]]: ...

    def reset(self) -> None: ...


class MicroFrontend:
    """The TFLite-Micro audio front-end via ``pymicro-features`` (extra ``wakeword``)."""

    def __init__(self) -> None:
        try:
            from pymicro_features import MicroFrontend as _Frontend
        except ImportError as err:
            raise ExtractorError(
                "wake words need pymicro-features: pip install 'edge-agent[wakeword]'"
            ) from err
        self._cls = _Frontend
        self._frontend = _Frontend()
        self._pending = b""

    def __call__(self, samples: npt.NDArray[np.int16]) -> list[npt.NDArray[np.float32]]:
        self._pending += samples.astype("<i2", copy=False).tobytes()
        rows: list[npt.NDArray[np.float32]] = []
        step_bytes = FEATURE_STEP * 2
        pos = 0
        for _ in range(_MAX_ROWS_PER_CALL):
            if pos + step_bytes > len(self._pending):
                break
            result = self._frontend.process_samples(self._pending[pos : pos + step_bytes])
            if result.samples_read <= 0:  # defensive: never spin on a stuck front-end
                break
            pos += result.samples_read * 2
            if result.features:
                rows.append(np.asarray(result.features, dtype=np.float32))
        self._pending = self._pending[pos:]
        return rows

    def reset(self) -> None:
        self._frontend = self._cls()
        self._pending = b""


class _Model:
    def __init__(self, session: Session, params: WakeWordParams) -> None:
        if len(session.inputs) != 1 or len(session.outputs) != 1:
            raise ExtractorError(f"{params.name}: expected one input and one output tensor")
        spec = session.inputs[0]
        if len(spec.shape) != 3 or spec.shape[2] != FEATURES or spec.dtype not in ("int8", "uint8"):
            raise ExtractorError(
                f"{params.name}: not a microWakeWord streaming model "
                f"(input {spec.shape} {spec.dtype})"
            )
        self.session = session
        self.params = params
        self.stride = int(spec.shape[1])
        self.input_name = spec.name
        self.input_dtype = np.dtype(spec.dtype)
        self.output_name = session.outputs[0].name
        self.rows: list[npt.NDArray[np.float32]] = []
        self.window: deque[float] = deque(maxlen=params.sliding_window)
        self.quiet_until = 0  # sample index before which this model does not fire again

    def step(self, rows: npt.NDArray[np.float32]) -> float:
        p = self.params
        info = np.iinfo(self.input_dtype)
        q = np.round(rows / p.input_scale + p.input_zero_point)
        q = np.clip(q, info.min, info.max).astype(self.input_dtype)
        out = self.session.run({self.input_name: q.reshape(1, self.stride, FEATURES)})
        raw = out[self.output_name].reshape(-1)[0]
        return (float(raw) - p.output_zero_point) * p.output_scale


class WakeWordDetector:
    """Several wake-word models over one audio stream; one instance per stream and worker.

    ``refractory_s``: after a detection the same word cannot fire again for this long (the
    mean stays above the cutoff for several steps while the phrase ends).
    """

    def __init__(
        self,
        models: Sequence[tuple[Session, WakeWordParams]],
        frontend: FeatureFrontend | None = None,
        refractory_s: float = 2.0,
    ) -> None:
        if not models:
            raise ExtractorError("WakeWordDetector needs at least one model")
        self._models = [_Model(s, p) for s, p in models]
        self._frontend: FeatureFrontend = frontend if frontend is not None else MicroFrontend()
        self._refractory = round(refractory_s * AUDIO_RATE)
        self._samples = 0  # samples fed so far
        self._rows = 0  # feature rows produced so far
        self.last_probabilities: dict[str, float] = {m.params.name: 0.0 for m in self._models}

    @property
    def names(self) -> list[str]:
        return [m.params.name for m in self._models]

    def process(self, chunk: npt.NDArray[np.int16]) -> list[Detection]:
        """Feed the next samples of the stream; return the wake words that fired in them."""
        if chunk.dtype != np.int16:
            raise ExtractorError(f"wake words take int16 samples, got {chunk.dtype}")
        self._samples += len(chunk)
        found: list[Detection] = []
        for row in self._frontend(chunk.reshape(-1)):
            self._rows += 1
            # The row covers audio up to here (10 ms steps; the first window is 30 ms long).
            t_sample = min(self._samples, self._rows * FEATURE_STEP + 2 * FEATURE_STEP)
            for model in self._models:
                model.rows.append(row)
                if len(model.rows) < model.stride:
                    continue
                prob = model.step(np.stack(model.rows))
                model.rows.clear()
                model.window.append(prob)
                if len(model.window) < model.window.maxlen:  # type: ignore[operator]
                    continue
                mean = float(np.mean(model.window))
                self.last_probabilities[model.params.name] = mean
                if mean > model.params.probability_cutoff and t_sample >= model.quiet_until:
                    found.append(Detection(model.params.name, t_sample / AUDIO_RATE, mean))
                    model.quiet_until = t_sample + self._refractory
                    model.window.clear()
                    _LOGGER.debug(
                        "wake word %s at %.2f s (p=%.3f)",
                        model.params.name,
                        t_sample / AUDIO_RATE,
                        mean,
                    )
        return found

    def reset_window(self) -> None:
        """Forget buffered features and probabilities (the models' own state decays by itself)."""
        self._frontend.reset()
        for model in self._models:
            model.rows.clear()
            model.window.clear()
