"""LiteRT back-end: ai_edge_litert, falling back to tflite_runtime (Raspberry Pi OS)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import RuntimeBackendError
from agent.runtimes.base import Array, TensorSpec

_LOGGER = logging.getLogger(__name__)


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError as err:
        raise RuntimeBackendError(
            "no LiteRT runtime: pip install ai-edge-litert (or tflite-runtime on Raspberry Pi OS)"
        ) from err


class TfliteSession:
    def __init__(self, path: Path, threads: int = 1) -> None:
        interpreter = _interpreter_class()
        try:
            self._it = interpreter(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise RuntimeBackendError(f"LiteRT cannot load {path.name}: {err}") from err
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()
        self.inputs = [
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._in
        ]
        self.outputs = [
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._out
        ]
        _LOGGER.debug("loaded %s with LiteRT (%d threads)", path.name, threads)

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        for d in self._in:
            self._it.set_tensor(d["index"], feeds[d["name"]])
        self._it.invoke()
        return {d["name"]: np.array(self._it.get_tensor(d["index"])) for d in self._out}
