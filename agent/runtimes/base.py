"""One small inference protocol; extractors only do pre/post-processing around it.

``open_session(path, runtime, options)`` loads a model with the named back-end (imported
lazily), on the accelerator the options ask for when it is there and on the CPU otherwise,
and runs one warm-up inference before returning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from agent.config.runtimes import OnnxRuntimeConfig, RuntimesConfig, TfliteRuntimeConfig
from agent.errors import RuntimeBackendError

_LOGGER = logging.getLogger(__name__)

RuntimeName = Literal["onnx", "tflite"]
Array = npt.NDArray[np.generic]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for a dimension the model leaves open
    dtype: str


class Session(Protocol):
    """A loaded model owned by one worker."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]: ...


@dataclass(frozen=True, slots=True)
class WarmupInput:
    """How to feed one input at warm-up when its spec leaves dimensions open."""

    shape: tuple[int, ...] | None = None
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Everything a back-end needs to open one model (built from ``RuntimesConfig``)."""

    onnx: OnnxRuntimeConfig = field(default_factory=OnnxRuntimeConfig)
    tflite: TfliteRuntimeConfig = field(default_factory=TfliteRuntimeConfig)
    threads: int | None = None  # None: the runtime section's ``threads``
    warmup: bool = True
    warmup_inputs: Mapping[str, WarmupInput] = field(default_factory=dict)
    label: str = ""  # the model's name in log lines; default the file name

    @classmethod
    def for_model(
        cls,
        cfg: RuntimesConfig | None,
        name: str,
        threads: int | None = None,
        warmup_inputs: Mapping[str, WarmupInput] | None = None,
    ) -> RuntimeOptions:
        """Resolve the options of model ``name``.

        Threads: ``runtimes.models.<name>.threads``, else ``threads`` (the component's own
        setting, e.g. ``vision.threads``), else ``runtimes.<runtime>.threads``.
        """
        cfg = cfg or RuntimesConfig()
        onnx, tflite, warmup = cfg.onnx, cfg.tflite, cfg.warmup
        override = cfg.models.get(name)
        if override is not None:
            if override.providers is not None:
                onnx = onnx.model_copy(update={"providers": override.providers})
            if override.delegates is not None:
                tflite = tflite.model_copy(update={"delegates": override.delegates})
            if override.threads is not None:
                threads = override.threads
            if override.warmup is not None:
                warmup = override.warmup
        return cls(
            onnx=onnx,
            tflite=tflite,
            threads=threads,
            warmup=warmup,
            warmup_inputs=dict(warmup_inputs or {}),
            label=name,
        )


def session_backend(session: Session) -> str:
    """What runs the session, e.g. ``onnxruntime/CPUExecutionProvider``, ``litert/edgetpu``."""
    return str(getattr(session, "backend", type(session).__name__))


def warmup_feeds(
    inputs: list[TensorSpec], hints: Mapping[str, WarmupInput]
) -> tuple[dict[str, Array], bool]:
    """Constant feeds for every input; also whether every shape was fully known."""
    feeds: dict[str, Array] = {}
    known = True
    for spec in inputs:
        hint = hints.get(spec.name, WarmupInput())
        if hint.shape is not None:
            shape = hint.shape
        else:
            known = known and all(d >= 0 for d in spec.shape)
            shape = tuple(d if d >= 0 else 1 for d in spec.shape)
        dtype = np.dtype(_numpy_dtype(spec.dtype))
        feeds[spec.name] = np.full(shape, hint.value, dtype=dtype)
    return feeds, known


def _numpy_dtype(name: str) -> str:
    # onnxruntime says "tensor(float)"; LiteRT gives numpy names.
    if name.startswith("tensor(") and name.endswith(")"):
        inner = name[7:-1]
        return {"float": "float32", "double": "float64", "bool": "bool"}.get(inner, inner)
    return name


def warm_up(session: Session, hints: Mapping[str, WarmupInput], label: str) -> float | None:
    """One inference on constant inputs; its milliseconds, or None when it was skipped.

    The model must run, else the load fails. A model whose inputs leave dimensions open is
    only warmed up when ``hints`` (the manifest's ``warmup``) give their shapes: a guess
    could not tell a bad model from a bad guess.
    """
    feeds, known = warmup_feeds(session.inputs, hints)
    if not known:
        _LOGGER.debug("%s: no warm-up (open input shapes and no warmup hints)", label)
        return None
    t0 = time.perf_counter()
    try:
        session.run(feeds)
    except Exception as err:  # back-ends raise their own untyped errors
        raise RuntimeBackendError(f"{label}: warm-up inference failed: {err}") from err
    ms = (time.perf_counter() - t0) * 1e3
    _LOGGER.debug("%s: warm-up inference %.2f ms", label, ms)
    return ms


def open_session(
    path: Path,
    runtime: RuntimeName,
    options: RuntimeOptions | int | None = None,
    *,
    threads: int | None = None,
) -> Session:
    """Load ``path`` with the named back-end, importing it lazily, then warm it up.

    ``options`` may be a bare thread count (the older ``open_session(path, runtime, threads)``).
    """
    if isinstance(options, int):
        options = RuntimeOptions(threads=options)
    options = options or RuntimeOptions()
    if threads is not None:
        options = replace(options, threads=threads)
    label = options.label or path.name
    session: Session
    if runtime == "onnx":
        from agent.runtimes.onnx import OnnxSession

        session = OnnxSession(path, options)
    elif runtime == "tflite":
        from agent.runtimes.tflite import TfliteSession

        session = TfliteSession(path, options)
    else:
        raise RuntimeBackendError(f"unknown runtime {runtime!r}")
    if options.warmup:
        ms = warm_up(session, options.warmup_inputs, label)
        if hasattr(session, "warmup_ms"):
            session.warmup_ms = ms
    return session
