"""LiteRT back-end: ai_edge_litert, falling back to tflite_runtime (Raspberry Pi OS).

Delegates (EdgeTPU through ``libedgetpu.so.1``, GPU) come from config; one that cannot load,
or that rejects the model, is dropped with one warning and the model runs on the CPU
(XNNPACK with ``threads`` threads unless ``xnnpack: false``).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config.runtimes import TfliteRuntimeConfig
from agent.errors import RuntimeBackendError
from agent.runtimes.base import Array, RuntimeOptions, TensorSpec

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiteRt:
    """The LiteRT Python module that is installed, and what we use from it."""

    name: str  # "litert" or "tflite_runtime"
    interpreter: Any
    load_delegate: Any
    op_resolver: Any


def litert() -> LiteRt:
    try:
        from ai_edge_litert import interpreter as mod

        return LiteRt("litert", mod.Interpreter, mod.load_delegate, mod.OpResolverType)
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod

        return LiteRt("tflite_runtime", mod.Interpreter, mod.load_delegate, mod.OpResolverType)
    except ImportError as err:
        raise RuntimeBackendError(
            "no LiteRT runtime: pip install ai-edge-litert (or tflite-runtime on Raspberry Pi OS)"
        ) from err


def _delegate_spec(cfg: TfliteRuntimeConfig, name: str) -> tuple[str, dict[str, str]]:
    if name == "edgetpu":
        opts = {"device": cfg.edgetpu.device} if cfg.edgetpu.device else {}
        return cfg.edgetpu.library, opts
    return cfg.gpu.library, {k: str(v) for k, v in cfg.gpu.options.items()}


def load_delegates(rt: LiteRt, cfg: TfliteRuntimeConfig) -> tuple[list[tuple[str, Any]], list[str]]:
    """Loaded delegates ``(name, delegate)`` and one reason per delegate that did not load."""
    loaded: list[tuple[str, Any]] = []
    failed: list[str] = []
    for name in dict.fromkeys(cfg.delegates):
        library, opts = _delegate_spec(cfg, name)
        try:
            # Checked first: LiteRT's Delegate raises from its own __del__ when the library
            # itself is missing, which would surface later as an "exception ignored" message.
            ctypes.CDLL(library)
        except OSError as err:
            failed.append(f"{name} ({err})")
            continue
        try:
            loaded.append((name, rt.load_delegate(library, opts)))
        except (ValueError, RuntimeError, OSError, AttributeError) as err:
            # e.g. libedgetpu present but no Coral plugged in.
            reason = " ".join(str(err).split()) or type(err).__name__
            failed.append(f"{name} ({reason})")
    return loaded, failed


class TfliteSession:
    """One LiteRT interpreter. ``backend`` names what runs it, e.g. ``litert/edgetpu``."""

    def __init__(self, path: Path, options: RuntimeOptions | None = None) -> None:
        options = options or RuntimeOptions()
        cfg = options.tflite
        rt = litert()
        label = options.label or path.name
        self.threads = options.threads or cfg.threads
        self.warmup_ms: float | None = None
        self._lock = threading.Lock()  # see run
        delegates, failed = load_delegates(rt, cfg)
        try:
            self._it = self._create(rt, path, cfg, delegates)
        except RuntimeBackendError as err:
            if not delegates:
                raise
            failed += [f"{name} (rejected the model: {err})" for name, _ in delegates]
            delegates = []
            self._it = self._create(rt, path, cfg, delegates)
        self._delegates = [d for _, d in delegates]  # kept alive as long as the interpreter
        cpu = "xnnpack" if cfg.xnnpack else "cpu"
        self.backend = f"{rt.name}/{'+'.join(n for n, _ in delegates) or cpu}"
        if failed:
            _LOGGER.warning(
                "%s: LiteRT delegate(s) %s not available; running on the CPU (%s, %d threads). "
                "Check the accelerator and its library, or change runtimes.tflite.delegates",
                label,
                "; ".join(failed),
                cpu,
                self.threads,
            )
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
        _LOGGER.debug("loaded %s with %s (%d threads)", label, self.backend, self.threads)

    def _create(
        self, rt: LiteRt, path: Path, cfg: TfliteRuntimeConfig, delegates: list[tuple[str, Any]]
    ) -> Any:
        kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": self.threads}
        if delegates:
            kwargs["experimental_delegates"] = [d for _, d in delegates]
        if not cfg.xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                rt.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        try:
            it = rt.interpreter(**kwargs)
            it.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise RuntimeBackendError(f"LiteRT cannot load {path.name}: {err}") from err
        return it

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        # An interpreter keeps its inputs and outputs in its own tensors, so two threads
        # (rooms sharing this session, agent.models.shared) would overwrite each other's
        # between set_tensor and get_tensor. Uncontended, the lock costs well under a µs.
        with self._lock:
            for d in self._in:
                self._it.set_tensor(d["index"], feeds[d["name"]])
            self._it.invoke()
            return {d["name"]: np.array(self._it.get_tensor(d["index"])) for d in self._out}
