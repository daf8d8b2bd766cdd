"""One small inference protocol; extractors only do pre/post-processing around it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from agent.errors import RuntimeBackendError

RuntimeName = Literal["onnx", "tflite"]
Array = npt.NDArray[np.generic]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


class Session(Protocol):
    """A loaded model owned by one worker."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]: ...


def open_session(path: Path, runtime: RuntimeName, threads: int = 1) -> Session:
    """Load ``path`` with the named back-end, importing it lazily."""
    if runtime == "onnx":
        from agent.runtimes.onnx import OnnxSession

        return OnnxSession(path, threads=threads)
    if runtime == "tflite":
        from agent.runtimes.tflite import TfliteSession

        return TfliteSession(path, threads=threads)
    raise RuntimeBackendError(f"unknown runtime {runtime!r}")
