"""onnxruntime back-end (CPU provider)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from agent.errors import RuntimeBackendError
from agent.runtimes.base import Array, TensorSpec

_LOGGER = logging.getLogger(__name__)


def _dims(shape: list[object]) -> tuple[int, ...]:
    # Symbolic dims (None / "batch") are reported as -1.
    return tuple(d if isinstance(d, int) else -1 for d in shape)


class OnnxSession:
    def __init__(self, path: Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - onnxruntime is a core dependency
            raise RuntimeBackendError(
                "onnxruntime is not installed: pip install onnxruntime"
            ) from err
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise RuntimeBackendError(f"onnxruntime cannot load {path.name}: {err}") from err
        self.inputs = [TensorSpec(i.name, _dims(i.shape), i.type) for i in self._sess.get_inputs()]
        self.outputs = [
            TensorSpec(o.name, _dims(o.shape), o.type) for o in self._sess.get_outputs()
        ]
        _LOGGER.debug("loaded %s with onnxruntime (%d threads)", path.name, threads)

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        names = [o.name for o in self.outputs]
        values = self._sess.run(names, feeds)
        return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}
