"""One loaded copy of each model for every pipeline in the process (several rooms).

Model sessions are a large part of the agent's memory: four pipelines built on a plain
store measured 319 MB RSS, on this one 170 MB (one pipeline: 170 MB), so each further copy
of the models would cost about 50 MB. ``SharedModelStore.load`` opens a model once per
(name, threads, runtime options) and hands every later caller the same session.

Sharing a session between the rooms' capture threads is safe because both back-ends are:
onnxruntime documents ``InferenceSession.run`` as thread-safe, and ``TfliteSession.run``
holds its own lock around set_tensor/invoke/get_tensor (a LiteRT interpreter is not).
Everything with state (VAD recurrent state, the segmenter, the frame ring, the
recognizer's buffers, rules, settings) stays per pipeline, and so do the sessions of models
that keep streaming state inside the interpreter (the microWakeWord models): their callers
load them with ``stateful=True`` and get a session of their own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

from agent.config.runtimes import RuntimesConfig
from agent.models.store import Manifest, ModelStore
from agent.runtimes.base import Session

_LOGGER = logging.getLogger(__name__)


class SharedModelStore(ModelStore):
    """A ``ModelStore`` whose ``load`` returns the session already loaded for the same
    model and options. ``opened`` counts real loads per model name (tests, bench)."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root)
        self._loaded: dict[tuple[str, int | None, str], tuple[Session, Manifest]] = {}
        self._lock = threading.Lock()
        self.opened: Counter[str] = Counter()

    def load(
        self,
        name: str,
        threads: int | None = None,
        runtimes: RuntimesConfig | None = None,
        *,
        stateful: bool = False,
    ) -> tuple[Session, Manifest]:
        if stateful:  # streaming state lives in the session: one per caller
            loaded = super().load(name, threads=threads, runtimes=runtimes)
            with self._lock:
                self.opened[name] += 1
            return loaded
        key = (name, threads, runtimes.model_dump_json() if runtimes is not None else "")
        with self._lock:  # pipelines are built one after the other; this is only a guard
            hit = self._loaded.get(key)
            if hit is not None:
                _LOGGER.debug("model %s shared (already loaded)", hit[1].ref)
                return hit
            loaded = super().load(name, threads=threads, runtimes=runtimes)
            self._loaded[key] = loaded
            self.opened[name] += 1
            return loaded
