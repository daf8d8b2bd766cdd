"""The trained command recognizer: speech embedding + a small int8 classifier head.

A VAD-cut segment is placed in a fixed window (``window_s`` of the head's manifest), turned
into a sequence of 96-dim speech embeddings (openWakeWord's front end, int8), and the head
(``edge-agent train``) gives one probability per known phrase plus "other". The best phrase
wins when its probability reaches the threshold tuned at training time (or
``speech.command_threshold``); "other", a phrase the config does not list, or a segment longer
than the window is rejected.

Why a trained head and not a grammar decoder: a grammar forces any speech onto its closest
phrase and its rejection score does not transfer between voices (measured in issue 8); a
head trained on many voices with hard near-miss negatives learns "none of these" directly.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config.runtimes import RuntimesConfig
from agent.config.speech import SpeechConfig
from agent.errors import ConfigError, ExtractorError, ModelError
from agent.extractors.embedding import SpeechEmbedder
from agent.extractors.speech import (
    SAMPLE_RATE,
    Posterior,
    Recognition,
    _as_samples,
    _duration_rejection,
    _phrase_table,
)
from agent.models.store import Manifest, ModelStore
from agent.runtimes.base import Session

_LOGGER = logging.getLogger(__name__)

OTHER = "other"


def fit_window(samples: npt.NDArray[np.int16], window: int) -> npt.NDArray[np.int16] | None:
    """Centre a segment in ``window`` samples of silence; None when it does not fit.

    Training uses the same function, so the head sees segments placed exactly as here.
    """
    n = len(samples)
    if n > window:
        return None
    out = np.zeros(window, dtype=np.int16)
    start = _start(n, window)
    out[start : start + n] = samples
    return out


def _start(n: int, window: int) -> int:
    """Where ``fit_window`` puts a segment of ``n`` samples."""
    return (window - n) // 2


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """What the head's manifest promises: its labels, their intents and its window."""

    labels: tuple[str, ...]  # labels[0] == "other"
    window_s: float
    threshold: float
    melspec: str
    embedding: str

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> HeadSpec:
        pre: dict[str, Any] = manifest.preprocess
        post: dict[str, Any] = manifest.postprocess
        try:
            labels = tuple(str(x) for x in post["labels"])
            spec = cls(
                labels=labels,
                window_s=float(pre["window_s"]),
                threshold=float(post["threshold"]),
                melspec=str(pre["melspec"]),
                embedding=str(pre["embedding"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{manifest.ref}: not a command head manifest ({err})") from err
        if not labels or labels[0] != OTHER or not 0.0 < spec.threshold < 1.0:
            raise ModelError(f"{manifest.ref}: labels must start with 'other', threshold in (0,1)")
        return spec


def _confidence(p: float, threshold: float) -> float:
    """Piecewise-linear map with 0.5 exactly at the threshold (as the other engines do)."""
    if p >= threshold:
        return 0.5 + 0.5 * (p - threshold) / (1.0 - threshold)
    return 0.5 * p / threshold


class CommandModelRecognizer:
    """Speech embedding → int8 head → phrase or "other"."""

    def __init__(
        self,
        cfg: SpeechConfig,
        intents: Mapping[str, Sequence[str]],
        store: ModelStore,
        runtimes: RuntimesConfig | None = None,
    ) -> None:
        self._cfg = cfg
        self._phrases = _phrase_table(intents)
        head, manifest = store.load(cfg.command_model, runtimes=runtimes)
        self._head: Session = head
        self._spec = HeadSpec.from_manifest(manifest)
        unknown = [p for p in self._phrases if p not in self._spec.labels]
        if unknown:
            raise ConfigError(
                [
                    f"speech: phrase '{p}' (intent {self._phrases[p]!r}) is not known to the "
                    f"command model {manifest.ref}; run `edge-agent train` for this config "
                    "and install the result, or set speech.engine: pocketsphinx"
                    for p in unknown
                ]
            )
        self._embedder = SpeechEmbedder.from_store(
            store,
            runtimes,
            melspec=self._spec.melspec,
            embedding=self._spec.embedding,
            threads=max(1, min(cfg.threads, os.cpu_count() or 1)),
        )
        self._input = head.inputs[0].name
        self._window = round(self._spec.window_s * SAMPLE_RATE)
        steps = self._embedder.params.steps(self._window)
        shape = head.inputs[0].shape
        if len(shape) != 3 or shape[1] not in (-1, steps):
            raise ModelError(
                f"{manifest.ref}: input {shape} does not fit a {self._spec.window_s} s window "
                f"({steps} embeddings of {self._embedder.model})"
            )
        self._threshold = (
            cfg.command_threshold if cfg.command_threshold is not None else self._spec.threshold
        )
        self.model = f"{manifest.ref}+{self._embedder.model}"
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        return self._spec.labels

    def probabilities(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32] | None:
        """Per-label probabilities of one segment; None when it is longer than the window."""
        placed = fit_window(_as_samples(samples), self._window)
        if placed is None:
            return None
        with self._lock:
            emb = self._embedder.embed(placed)
            out = self._head.run({self._input: emb[np.newaxis].astype(np.float32)})
        probs = np.asarray(next(iter(out.values())), dtype=np.float32).reshape(-1)
        if probs.shape[0] != len(self._spec.labels):
            raise ExtractorError(
                f"{self.model}: head gave {probs.shape[0]} outputs for "
                f"{len(self._spec.labels)} labels"
            )
        if not np.all(np.isfinite(probs)):
            raise ExtractorError(f"{self.model}: head gave non-finite probabilities")
        return probs

    def prefetch(self, samples: npt.NDArray[np.int16], final: int) -> None:
        """``samples`` are the first samples of a segment that ``recognize`` will get at
        ``final`` samples long: embed now what those extra samples cannot change, so that call
        has less to do (its answer is exactly the same)."""
        x = _as_samples(samples)
        if not len(x) <= final <= self._window:
            return
        placed = np.zeros(self._window, dtype=np.int16)
        start = _start(final, self._window)
        placed[start : start + len(x)] = x
        with self._lock:
            self._embedder.prefetch(placed, (start + len(x), start + final))

    def recognize(self, samples: npt.NDArray[np.int16]) -> Recognition:
        x = _as_samples(samples)
        reason = _duration_rejection(self._cfg, len(x))
        if reason:
            return Recognition(None, "", 0.0, self.model, reason)
        probs = self.probabilities(x)
        if probs is None:
            return Recognition(
                None, "", 0.0, self.model, f"longer than the model's {self._spec.window_s} s window"
            )
        best = int(np.argmax(probs))
        label = self._spec.labels[best]
        p = float(probs[best])
        conf = _confidence(p, self._threshold)
        post = self._posterior(probs)
        _LOGGER.debug("command model: %r p=%.3f confidence=%.2f", label, p, conf)
        if label == OTHER:
            return Recognition(None, "", 0.0, self.model, f"not a command (p_other={p:.2f})", post)
        intent = self._phrases.get(label)
        if intent is None:
            return Recognition(None, label, 0.0, self.model, f"{label!r} is not configured", post)
        if math.isnan(conf) or conf < self._cfg.min_confidence:
            return Recognition(
                None,
                label,
                conf,
                self.model,
                f"not sure ({label!r} p={p:.2f} < {self._threshold})",
                post,
            )
        return Recognition(intent, label, conf, self.model, posterior=post)

    def _posterior(self, probs: npt.NDArray[np.float32]) -> Posterior | None:
        """The best *configured* phrase and its margin over every other label."""
        configured = [i for i, lab in enumerate(self._spec.labels) if lab in self._phrases]
        if not configured:
            return None
        k = max(configured, key=lambda i: float(probs[i]))
        rest = np.delete(probs, k)
        label = self._spec.labels[k]
        return Posterior(
            intent=self._phrases[label],
            phrase=label,
            p=float(probs[k]),
            p_other=float(probs[0]),
            margin=float(probs[k] - (rest.max() if rest.size else 0.0)),
        )


__all__ = ["OTHER", "CommandModelRecognizer", "HeadSpec", "fit_window"]
